"""Kubernetes resource quantities ("100m", "1.5", "16Gi", "1e3"), parsed and printed exactly as
k8s.io/apimachinery/pkg/api/resource does.

A quantity is ``<sign><digits>[.<digits>]<suffix>`` where the suffix is a binary SI one (Ki .. Ei),
a decimal SI one (n, u, m, "", k, M, G, T, P, E) or a decimal exponent (e3, E-2). Parsing rounds
non-zero amounts *up* (away from zero) to nano precision, so asking for a tiny amount still asks
for something; printing gives the canonical form Kubernetes stores and returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_UP, Context, Decimal, localcontext

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {0: "", **{v // 10: k for k, v in _BINARY.items()}}
# Sign, integer digits, optional fraction (Kubernetes accepts "1." and ".5"), then the suffix.
_SYNTAX = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?(.*)", re.DOTALL)
_EXPONENT = re.compile(r"[eE]([+-]?\d+)")
_NANO = Decimal("1e-9")
_MAX_BINARY = Decimal(2**63 - 1)  # Kubernetes caps BinarySI amounts at the int64 maximum
_MAX_EXPONENT = 1000
_CONTEXT = Context(prec=2 * _MAX_EXPONENT + 64)  # enough digits to stay exact over the whole range


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity; the message says why."""


@dataclass(frozen=True, slots=True)
class Quantity:
    amount: Decimal
    format: str

    def __str__(self) -> str:
        return format_quantity(self.amount, self.format)

    def value(self) -> int:
        """The amount rounded up (away from zero) to an integer, as ``Quantity.Value()``."""
        return int(self.amount.to_integral_value(rounding=ROUND_UP))

    def milli_value(self) -> int:
        """Thousandths of the amount, rounded up (away from zero), as ``Quantity.MilliValue()``."""
        with localcontext(_CONTEXT):
            return int((self.amount * 1000).to_integral_value(rounding=ROUND_UP))


def _suffix(text: str, suffix: str) -> tuple[int, int, str]:
    """(base, exponent, format) of a suffix."""
    if suffix in _BINARY:
        return 2, _BINARY[suffix], BINARY_SI
    if suffix in _DECIMAL:
        return 10, _DECIMAL[suffix], DECIMAL_SI
    match = _EXPONENT.fullmatch(suffix)
    if match is None:
        raise QuantityError(f"invalid quantity {text!r}: unknown suffix {suffix!r}")
    exponent = int(match.group(1))
    if abs(exponent) > _MAX_EXPONENT:
        raise QuantityError(f"invalid quantity {text!r}: exponent {exponent} is out of range")
    return 10, exponent, DECIMAL_EXPONENT


def parse_quantity(text: str | int | float) -> Quantity:
    """Parse a quantity; JSON numbers are accepted, as Kubernetes' JSON decoder accepts them."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise QuantityError(f"invalid quantity {text!r}: expected a string or a number")
    if isinstance(text, float) and text != text or text in (float("inf"), float("-inf")):
        raise QuantityError(f"invalid quantity {text!r}: not a finite number")
    text = str(text)
    match = _SYNTAX.fullmatch(text)
    sign, whole, fraction, suffix = match.groups() if match else ("", "", None, text)
    if not whole and not fraction:
        raise QuantityError(f"invalid quantity {text!r}: expected a number such as '500m', '1.5' or '16Gi'")
    base, exponent, fmt = _suffix(text, suffix)
    with localcontext(_CONTEXT):
        amount = Decimal(f"{whole or 0}.{fraction or 0}") * (Decimal(base) ** exponent)
        if amount:
            amount = amount.quantize(_NANO, rounding=ROUND_UP)  # never round a request down to zero
        if fmt == BINARY_SI and amount > _MAX_BINARY:
            amount = _MAX_BINARY
        return Quantity(-amount if sign == "-" and amount else amount, fmt)


def _mantissa_exponent(amount: Decimal) -> tuple[int, int]:
    """amount == mantissa * 10**exponent with the exponent a multiple of 3, as large as possible."""
    _, digits, exp = amount.normalize(_CONTEXT).as_tuple()
    mantissa = int("".join(map(str, digits)))
    exponent = int(exp)
    shift = exponent % 3  # lower the exponent to a multiple of 3 by growing the mantissa
    return mantissa * 10**shift, exponent - shift


def format_quantity(amount: Decimal | int, fmt: str = DECIMAL_SI) -> str:
    """The canonical string of an amount in a format, as ``Quantity.String()`` gives it."""
    amount = Decimal(amount)
    if not amount:
        return "0"
    sign, magnitude = ("-" if amount < 0 else ""), abs(amount).quantize(_NANO, rounding=ROUND_UP, context=_CONTEXT)
    if fmt == BINARY_SI:
        # Below 1024, or not a whole number, binary suffixes would need rounding: print decimal.
        if magnitude < 1024 or magnitude != magnitude.to_integral_value():
            fmt = DECIMAL_SI
        else:
            mantissa, power = int(magnitude), 0
            while mantissa % 1024 == 0 and power < max(_BINARY_SUFFIX):
                mantissa //= 1024
                power += 1
            return f"{sign}{mantissa}{_BINARY_SUFFIX[power]}"
    mantissa, exponent = _mantissa_exponent(magnitude)
    if fmt == DECIMAL_EXPONENT:
        return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
    if exponent > max(_DECIMAL_SUFFIX):  # no SI prefix above E: keep the rest in the mantissa
        mantissa, exponent = mantissa * 10 ** (exponent - max(_DECIMAL_SUFFIX)), max(_DECIMAL_SUFFIX)
    return f"{sign}{mantissa}{_DECIMAL_SUFFIX[exponent]}"
