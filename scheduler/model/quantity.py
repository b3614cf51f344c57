"""Kubernetes resource quantities ("100m", "1.5", "16Gi", "500M", "1e3"), parsed and printed exactly
as k8s.io/apimachinery/pkg/api/resource (quantity.go, suffix.go, amount.go) does.

A quantity is ``<sign><digits>[.<digits>]<suffix>``; the suffix is binary SI (Ki .. Ei), decimal SI
(n, u, m, "", k, M, G, T, P, E) or a decimal exponent (e3, E-2, e+6). The amount is kept as an exact
``Decimal``; all arithmetic runs in private contexts sized to the number, so the caller's decimal
context never matters and is never changed.

Kubernetes behaviour worth knowing (each one is reproduced on purpose):

* Parsing rounds a non-zero amount *away from zero* to nano precision ("0.9n" -> 1n, "1.1E-9" ->
  2n): whoever asks for a tiny amount must still get something.
* A BinarySI amount is capped, silently, at 2**63-1 ("8Ei" parses as 9223372036854775807); decimal
  amounts are not capped ("10E" keeps its value).
* "1." and "1.G" are accepted (an empty fraction; upstream keeps a TODO to forbid it), and so are
  ".5" and "+1".
* "E" is the exa suffix, while "e" alone is an error; "1E3" is the exponent form and prints as "1e3".
* BinarySI amounts below 1024 in magnitude, or not whole, print in DecimalSI ("0.5Ki" -> "512",
  "1.5Ki" stays BinarySI but prints "1536"): there is no binary suffix for them without rounding.
* The exponent after "e" is read as an int64 and then truncated to int32, so "1e4294967296" is 1.
* DecimalSI has no suffix above E (10**18): newer apimachinery prints "1000E" as "1e21" rather than
  dropping the magnitude (older releases printed "1"); the value-preserving form is the one used here.

Deliberate differences, all on inputs a real object never holds: a number must have at least one
digit ("Ki", "e3", "." and "-" are errors here; Kubernetes' int64 fast path reads them as 0 while its
big-decimal path rejects them), and format names other than the three are errors rather than
falling back to DecimalExponent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    ROUND_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"
FORMATS = frozenset({BINARY_SI, DECIMAL_SI, DECIMAL_EXPONENT})

_BINARY_POWER = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BINARY_SUFFIX = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")  # index: power of 1024
_DECIMAL_POWER = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {power: suffix for suffix, power in _DECIMAL_POWER.items()}

# Kubernetes' scanner (parseQuantityString) as a pattern: sign, digits, optional "." and digits,
# then any run of suffix letters followed by an optional signed integer. [0-9], not \d: only ASCII
# digits count, as in Go.
_SYNTAX = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*[+-]?[0-9]*)")
_EXPONENT = re.compile(r"[eE]([+-]?[0-9]+)")
_NUMBER_PREFIX = re.compile(r"[+-]?[0-9]*(?:\.[0-9]*)?")

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_MAX_BINARY = Decimal(_INT64_MAX)
_NANO = Decimal("1e-9")


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity (or cannot be printed as one); the message says why."""


def _context(digits: int, *, exact: bool) -> Context:
    """A private context wide enough for numbers of ``digits`` digits; with ``exact`` any rounding raises."""
    traps = [InvalidOperation, Overflow, DivisionByZero] + ([Inexact] if exact else [])
    return Context(prec=digits + 40, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=traps)


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact amount and the format Kubernetes would print it in."""

    amount: Decimal
    format: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, int) and not isinstance(self.amount, bool):
            object.__setattr__(self, "amount", Decimal(self.amount))
        elif not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise QuantityError(f"invalid quantity amount {self.amount!r}: expected a finite Decimal")
        if self.format not in FORMATS:
            raise QuantityError(f"unknown quantity format {self.format!r}: expected one of {sorted(FORMATS)}")

    def __str__(self) -> str:
        """The canonical string, as ``Quantity.String()`` gives it."""
        return _canonical(self.amount, self.format)

    def value(self) -> int:
        """The amount as an integer, as ``Quantity.Value()``: rounded up (away from zero)."""
        return _scaled_int(self.amount, 0)

    def milli_value(self) -> int:
        """Thousandths of the amount, as ``Quantity.MilliValue()``: rounded up (away from zero)."""
        return _scaled_int(self.amount, 3)


def _scaled_int(amount: Decimal, power: int) -> int:
    """amount * 10**power rounded away from zero, saturating at the int64 bounds.

    Away from zero, not toward +inf: Kubernetes' int64 path (every ordinary string such as "-1.5"
    or "-100m") gives -2 for -1.5, and its RoundUp tests expect -9.01 -> -10; for the non-negative
    amounts real requests hold this is simply the ceiling. Past int64 Kubernetes overflows (its
    newer int64 path saturates); saturating also keeps "1e999999999" from building a giant int.
    """
    if not amount:
        return 0
    sign, digits, exponent = amount.as_tuple()
    scaled = Decimal((sign, digits, int(exponent) + power))  # exact: only the exponent moves
    if scaled.adjusted() >= 19:  # |scaled| >= 10**19 > 2**63
        return _INT64_MIN if sign else _INT64_MAX
    whole = int(scaled.to_integral_value(rounding=ROUND_UP))
    return max(_INT64_MIN, min(_INT64_MAX, whole))


def _error(text: str, reason: str) -> QuantityError:
    return QuantityError(f"invalid quantity {text!r}: {reason}")


def _diagnose(text: str) -> str:
    """Why ``text`` does not even scan as <number><suffix>."""
    end = _NUMBER_PREFIX.match(text).end()  # type: ignore[union-attr]  # the pattern matches ""
    head, rest = text[:end], text[end:]
    if not any(c in "0123456789" for c in head):
        if head in ("+", "-") and rest[:1] in ("+", "-"):
            return "more than one sign"
        return "expected a number such as '500m', '1.5' or '16Gi'"
    if rest.startswith("."):
        return "more than one decimal point"
    return f"unknown suffix {rest!r}"


def _interpret(text: str, suffix: str) -> tuple[int, int, str]:
    """(base, power, format) of a suffix, as suffix.go's interpret."""
    if suffix in _DECIMAL_POWER:
        return 10, _DECIMAL_POWER[suffix], DECIMAL_SI
    if suffix in _BINARY_POWER:
        return 2, _BINARY_POWER[suffix], BINARY_SI
    match = _EXPONENT.fullmatch(suffix)
    if match is None:
        if suffix in ("e", "E") or (suffix[:1] in ("e", "E") and suffix[1:2] in ("+", "-")):
            raise _error(text, f"exponent {suffix!r} has no digits")
        raise _error(text, f"unknown suffix {suffix!r}")
    literal = match.group(1)
    if len(literal.lstrip("+-").lstrip("0")) > 19:  # also keeps int() clear of its digit limit
        raise _error(text, f"exponent {literal} is out of range")
    exponent = int(literal)
    if not _INT64_MIN <= exponent <= _INT64_MAX:  # strconv.ParseInt(..., 64) fails
        raise _error(text, f"exponent {literal} is out of range")
    # Kubernetes then keeps only the low 32 bits (int32(parsed)): "1e4294967296" is 1.
    exponent = (exponent + 2**31) % 2**32 - 2**31
    return 10, exponent, DECIMAL_EXPONENT


def _parse(text: str) -> Quantity:
    if not text:
        raise _error(text, "empty string")
    if text[0].isspace() or text[-1].isspace():
        raise _error(text, "leading or trailing whitespace is not allowed")
    match = _SYNTAX.fullmatch(text)
    if match is None:
        raise _error(text, _diagnose(text))
    sign, whole, fraction, suffix = match.groups()
    fraction = fraction or ""
    if not whole and not fraction:
        if suffix[:1] in ("+", "-"):
            raise _error(text, "more than one sign")
        raise _error(text, "no digits in the number" + (f" before suffix {suffix!r}" if suffix else ""))
    base, power, fmt = _interpret(text, suffix)

    digits = (whole + fraction).lstrip("0")
    if not digits:
        return Quantity(Decimal(0), fmt)  # "-0", "0.0Ki": zero keeps the suffix's format
    if base == 10:
        amount = Decimal(f"{digits}E{power - len(fraction)}")  # exact: built from the digits
    else:
        amount = _context(len(digits) + 19, exact=True).multiply(
            Decimal(f"{digits}E-{len(fraction)}"), Decimal(1 << power)
        )
    if amount.as_tuple().exponent < -9:  # finer than nano: round the magnitude up
        amount = amount.quantize(_NANO, rounding=ROUND_UP, context=_context(len(digits) + 19, exact=False))
    if fmt == BINARY_SI:
        if amount > _MAX_BINARY:
            amount = _MAX_BINARY  # Kubernetes' cap, applied to the magnitude
        elif amount < 1:
            fmt = DECIMAL_SI  # "0.000000000001Ki" -> 2n: below 1, binary SI would only confuse
    return Quantity(amount.copy_negate() if sign == "-" else amount, fmt)


def parse_quantity(text: str | int | float) -> Quantity:
    """Parse a quantity string; JSON numbers are accepted too, as Kubernetes' UnmarshalJSON does.

    Strings follow ``ParseQuantity``, which allows no surrounding whitespace. A float is read from
    its shortest repr, which is what a JSON number decoded by ``json`` round-trips to; to keep the
    exact JSON text (e.g. "1E3", which Kubernetes keeps as DecimalExponent) decode with
    ``json.loads(..., parse_float=str)``.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise QuantityError(f"invalid quantity {text!r}: expected a string or a number, not {type(text).__name__}")
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(f"invalid quantity {text!r}: not a finite number")
        text = repr(text)
    elif isinstance(text, int):
        text = format(Decimal(text), "f")  # no int-to-str digit limit
    return _parse(text)


def format_quantity(amount: Decimal | int, fmt: str = DECIMAL_SI) -> str:
    """The canonical string of an exact amount in a format, as ``Quantity.String()`` prints it.

    The amount is printed as it is (no rounding to nano), as Kubernetes prints a computed quantity.
    """
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise QuantityError(f"cannot format {amount!r} as a quantity: expected a Decimal or an int")
    amount = Decimal(amount)
    if not amount.is_finite():
        raise QuantityError(f"cannot format {amount!r} as a quantity: not a finite number")
    if fmt not in FORMATS:
        raise QuantityError(f"unknown quantity format {fmt!r}: expected one of {sorted(FORMATS)}")
    return _canonical(amount, fmt)


def _canonical(amount: Decimal, fmt: str) -> str:
    """Largest exponent (a multiple of 3, or a power of 1024) that leaves a whole mantissa."""
    if not amount:
        return "0"
    sign = "-" if amount.is_signed() else ""
    _, digit_tuple, exponent = amount.as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    coefficient = digits.rstrip("0")  # non-empty: the amount is not zero
    exponent = int(exponent) + len(digits) - len(coefficient)
    if fmt == BINARY_SI:
        if exponent >= 0 and amount.copy_abs() >= 1024:
            return sign + _binary(coefficient, exponent)
        # Below 1024 or not whole, a binary suffix would need rounding: Kubernetes prints DecimalSI.
        fmt = DECIMAL_SI
    shift = exponent % 3  # lower the exponent to a multiple of 3 by growing the mantissa
    mantissa, exponent = coefficient + "0" * shift, exponent - shift
    if fmt == DECIMAL_SI and exponent in _DECIMAL_SUFFIX:
        return sign + mantissa + _DECIMAL_SUFFIX[exponent]
    # DecimalExponent; also DecimalSI past n..E, which has no suffix (newer Kubernetes prints "1e21").
    return sign + mantissa + (f"e{exponent}" if exponent else "")


def _binary(coefficient: str, exponent: int) -> str:
    """A whole magnitude coefficient * 10**exponent (>= 1024) with its largest binary suffix."""
    context = _context(len(coefficient) + exponent, exact=True)
    mantissa, power = Decimal(f"{coefficient}E{exponent}"), 0
    # Stop at Ei: Kubernetes has no larger suffix (and would print the mantissa without one).
    while power < len(_BINARY_SUFFIX) - 1 and not context.remainder(mantissa, 1024):
        mantissa, power = context.divide_int(mantissa, 1024), power + 1
    return format(mantissa, "f") + _BINARY_SUFFIX[power]
