"""Kubernetes quantities: the upstream test tables of k8s.io/apimachinery/pkg/api/resource
(quantity_test.go), ported case by case, plus properties checked against an independent
Fraction-based model of the parse rules."""

from __future__ import annotations

import decimal
import math
import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from scheduler.model.quantity import (
    BINARY_SI,
    DECIMAL_EXPONENT,
    DECIMAL_SI,
    Quantity,
    QuantityError,
    format_quantity,
    parse_quantity,
)

BIN, DEC, EXP = BINARY_SI, DECIMAL_SI, DECIMAL_EXPONENT
MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)


def dec(mantissa: int, exponent: int) -> Decimal:
    """Upstream's decQuantity amount: mantissa * 10**exponent, exactly."""
    return Decimal(f"{mantissa}E{exponent}")


# --- TestQuantityParse: input -> amount and format --------------------------------------------

PARSE_TABLE = [
    ("0", dec(0, 0), DEC),
    ("0n", dec(0, 0), DEC),
    ("0u", dec(0, 0), DEC),
    ("0m", dec(0, 0), DEC),
    ("0Ki", dec(0, 0), BIN),
    ("0k", dec(0, 0), DEC),
    ("0Mi", dec(0, 0), BIN),
    ("0M", dec(0, 0), DEC),
    ("0Gi", dec(0, 0), BIN),
    ("0G", dec(0, 0), DEC),
    ("0Ti", dec(0, 0), BIN),
    ("0T", dec(0, 0), DEC),
    # Quantity less numbers are allowed
    ("1", dec(1, 0), DEC),
    # Binary suffixes
    ("1Ki", dec(1024, 0), BIN),
    ("8Ki", dec(8 * 1024, 0), BIN),
    ("7Mi", dec(7 * 1024**2, 0), BIN),
    ("6Gi", dec(6 * 1024**3, 0), BIN),
    ("5Ti", dec(5 * 1024**4, 0), BIN),
    ("4Pi", dec(4 * 1024**5, 0), BIN),
    ("3Ei", dec(3 * 1024**6, 0), BIN),
    ("10Ti", dec(10 * 1024**4, 0), BIN),
    ("100Ti", dec(100 * 1024**4, 0), BIN),
    # Decimal suffixes
    ("5n", dec(5, -9), DEC),
    ("4u", dec(4, -6), DEC),
    ("3m", dec(3, -3), DEC),
    ("9", dec(9, 0), DEC),
    ("8k", dec(8, 3), DEC),
    ("50k", dec(5, 4), DEC),
    ("7M", dec(7, 6), DEC),
    ("6G", dec(6, 9), DEC),
    ("5T", dec(5, 12), DEC),
    ("40T", dec(4, 13), DEC),
    ("300T", dec(3, 14), DEC),
    ("2P", dec(2, 15), DEC),
    ("1E", dec(1, 18), DEC),
    # Decimal exponents
    ("1E-3", dec(1, -3), EXP),
    ("1e3", dec(1, 3), EXP),
    ("1E6", dec(1, 6), EXP),
    ("1e9", dec(1, 9), EXP),
    ("1E12", dec(1, 12), EXP),
    ("1e15", dec(1, 15), EXP),
    ("1E18", dec(1, 18), EXP),
    # Nonstandard but still parsable
    ("1e14", dec(1, 14), EXP),
    ("1e13", dec(1, 13), EXP),
    ("100.035k", dec(100035, 0), DEC),
    # Things that look like floating point
    ("0.001", dec(1, -3), DEC),
    ("0.0005k", dec(5, -1), DEC),
    ("0.005", dec(5, -3), DEC),
    ("0.05", dec(5, -2), DEC),
    ("0.5", dec(5, -1), DEC),
    ("0.00050k", dec(5, -1), DEC),
    ("0.00500", dec(5, -3), DEC),
    ("0.05000", dec(5, -2), DEC),
    ("0.50000", dec(5, -1), DEC),
    ("0.5e0", dec(5, -1), EXP),
    ("0.5e-1", dec(5, -2), EXP),
    ("0.5e-2", dec(5, -3), EXP),
    ("10.035M", dec(10035, 3), DEC),
    ("1.2e3", dec(12, 2), EXP),
    ("1.3E+6", dec(13, 5), EXP),
    ("1.40e9", dec(14, 8), EXP),
    ("1.53E12", dec(153, 10), EXP),
    ("1.6e15", dec(16, 14), EXP),
    ("1.7E18", dec(17, 17), EXP),
    ("9.01", dec(901, -2), DEC),
    ("8.1k", dec(81, 2), DEC),
    ("7.123456M", dec(7123456, 0), DEC),
    ("6.987654321G", dec(6987654321, 0), DEC),
    ("5.444T", dec(5444, 9), DEC),
    ("40.1T", dec(401, 11), DEC),
    ("300.2T", dec(3002, 11), DEC),
    ("2.5P", dec(25, 14), DEC),
    ("1.01E", dec(101, 16), DEC),
    # Things that saturate/round
    ("3.001n", dec(4, -9), DEC),
    ("1.1E-9", dec(2, -9), EXP),
    ("0.0000000001", dec(1, -9), DEC),
    ("0.0000000005", dec(1, -9), DEC),
    ("0.00000000050", dec(1, -9), DEC),
    ("0.5e-9", dec(1, -9), EXP),
    ("0.9n", dec(1, -9), DEC),
    ("0.00000012345", dec(124, -9), DEC),
    ("0.00000012354", dec(124, -9), DEC),
    ("9Ei", dec(MAX_INT64, 0), BIN),
    ("9223372036854775807Ki", dec(MAX_INT64, 0), BIN),
    ("12E", dec(12, 18), DEC),
    # We'll accept fractional binary stuff, too.
    ("100.035Ki", dec(10243584, -2), BIN),
    ("0.5Mi", dec(524288, 0), BIN),
    ("0.05Gi", dec(536870912, -1), BIN),
    ("0.025Ti", dec(274877906944, -1), BIN),
    # Things written by trolls
    ("0.000000000001Ki", dec(2, -9), DEC),  # rounds up, changes format
    (".001", dec(1, -3), DEC),
    (".0001k", dec(100, -3), DEC),
    ("1.", dec(1, 0), DEC),
    ("1.G", dec(1, 9), DEC),
]


@pytest.mark.parametrize(("text", "amount", "fmt"), PARSE_TABLE, ids=[row[0] for row in PARSE_TABLE])
def test_parse_table(text: str, amount: Decimal, fmt: str) -> None:
    q = parse_quantity(text)
    assert q.amount == amount
    assert q.format == fmt


@pytest.mark.parametrize(("text", "amount", "fmt"), PARSE_TABLE, ids=[row[0] for row in PARSE_TABLE])
def test_parse_table_negated_and_explicit_plus(text: str, amount: Decimal, fmt: str) -> None:
    # TestQuantityParse's "negative version of everything" and "explicit +" loops.
    negative = parse_quantity("-" + text)
    assert negative.amount == -amount
    assert negative.format == fmt
    assert parse_quantity("+" + text) == Quantity(amount, fmt)


# TestQuantityParse's invalid list (first block), then the brief's, then inputs Kubernetes' int64
# fast path reads as 0 although they hold no digit (its big-decimal path rejects the same shapes).
INVALID = [
    "",
    "1.1.M",
    "1+1.0M",
    "0.1mi",
    "0.1am",
    "aoeu",
    ".5i",
    "1i",
    "-3.01i",
    "-3.01e-",
    " 1",  # surrounding whitespace is forbidden
    "1 ",
    "\t1",
    "1\n",
    "1.2.3",
    "1Kb",
    "12x",
    "--1",
    "+-1",
    "1e",
    "1E+",
    "1e3.5",
    "1ki",
    "1KI",
    "1Ee3",
    "1e1e1",
    "1 Ki",
    "0x10",
    "1_000",
    "\u0661",  # ARABIC-INDIC DIGIT ONE: Go only reads ASCII digits
    "1e9223372036854775808",  # exponent does not fit int64 (strconv.ParseInt fails)
    "1e-9223372036854775809",
    "e3",
    "Ki",
    "m",
    "E",
    ".",
    "-",
    "+",
    "-.",
    ".e-20",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_inputs_raise(text: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"invalid quantity {text!r}: ")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("12x", "unknown suffix 'x'"),
        ("1Kb", "unknown suffix 'Kb'"),
        ("0.1mi", "unknown suffix 'mi'"),
        ("", "empty string"),
        (" 1", "whitespace"),
        ("1.2.3", "more than one decimal point"),
        ("--1", "more than one sign"),
        ("1e", "exponent 'e' has no digits"),
        ("-3.01e-", "exponent 'e-' has no digits"),
        ("Ki", "no digits in the number before suffix 'Ki'"),
        ("aoeu", "expected a number"),
        ("1e99999999999999999999", "out of range"),
    ],
)
def test_error_messages_name_the_input_and_the_problem(text: str, reason: str) -> None:
    with pytest.raises(QuantityError, match=re.escape(reason)) as info:
        parse_quantity(text)
    assert repr(text) in str(info.value)


def test_quantity_parse_zero() -> None:
    # TestQuantityParseZero
    assert str(parse_quantity("0")) == "0"


# --- TestQuantityString: amount + format -> canonical string; alternates parse to it -------------

STRING_TABLE = [
    (dec(1024**3, 0), BIN, "1Gi", "1024Mi"),
    (dec(300 * 1024**2, 0), BIN, "300Mi", "307200Ki"),
    (dec(6 * 1024, 0), BIN, "6Ki", ""),
    (dec(1001 * 1024**3, 0), BIN, "1001Gi", "1025024Mi"),
    (dec(1024**4, 0), BIN, "1Ti", "1024Gi"),
    (dec(5, 0), BIN, "5", "5000m"),
    (dec(500, -3), BIN, "500m", "0.5"),
    (dec(1, 9), DEC, "1G", "1000M"),
    (dec(1000, 6), DEC, "1G", "0.001T"),
    (dec(1000000, 3), DEC, "1G", ""),
    (dec(1000000000, 0), DEC, "1G", ""),
    (dec(1, -3), DEC, "1m", "1000u"),
    (dec(80, -3), DEC, "80m", ""),
    (dec(1080, -3), DEC, "1080m", "1.08"),
    (dec(108, -2), DEC, "1080m", "1080000000n"),
    (dec(10800, -4), DEC, "1080m", ""),
    (dec(300, 6), DEC, "300M", ""),
    (dec(1, 12), DEC, "1T", ""),
    # DecimalSI has no suffix beyond "E": larger exponents fall back to exponent notation.
    (dec(1, 18), DEC, "1E", ""),
    (dec(1, 21), DEC, "1e21", "1000E"),
    (dec(5, 21), DEC, "5e21", "5000E"),
    (dec(1, 24), DEC, "1e24", "1000000E"),
    (dec(1234567, 6), DEC, "1234567M", ""),
    (dec(1234567, -3), BIN, "1234567m", ""),
    (dec(3, 3), DEC, "3k", ""),
    (dec(1025, 0), BIN, "1025", ""),
    (dec(0, 0), DEC, "0", ""),
    (dec(0, 0), BIN, "0", ""),
    (dec(1, 9), EXP, "1e9", ".001e12"),
    (dec(1, -3), EXP, "1e-3", "0.001e0"),
    (dec(1, -9), EXP, "1e-9", "1000e-12"),
    (dec(80, -3), EXP, "80e-3", ""),
    (dec(300, 6), EXP, "300e6", ""),
    (dec(1, 12), EXP, "1e12", ""),
    (dec(1, 3), EXP, "1e3", ""),
    (dec(3, 3), EXP, "3e3", ""),
    (dec(3, 3), DEC, "3k", ""),
    (dec(0, 0), EXP, "0", "00"),
    (dec(1, -9), DEC, "1n", ""),
    (dec(80, -9), DEC, "80n", ""),
    (dec(1080, -9), DEC, "1080n", ""),
    (dec(108, -8), DEC, "1080n", ""),
    (dec(10800, -10), DEC, "1080n", ""),
    (dec(1, -6), DEC, "1u", ""),
    (dec(80, -6), DEC, "80u", ""),
    (dec(1080, -6), DEC, "1080u", ""),
]


@pytest.mark.parametrize(("amount", "fmt", "expect", "alternate"), STRING_TABLE, ids=[r[2] + "/" + r[1] for r in STRING_TABLE])
def test_string_table(amount: Decimal, fmt: str, expect: str, alternate: str) -> None:
    assert format_quantity(amount, fmt) == expect
    assert str(Quantity(amount, fmt)) == expect
    assert str(parse_quantity(expect)) == expect
    if alternate:
        assert str(parse_quantity(alternate)) == expect
    if amount:  # never "-0"
        assert format_quantity(-amount, fmt) == "-" + expect


def test_quantity_neg() -> None:
    # TestQuantityNeg
    assert format_quantity(-dec(901, -2), DEC) == "-9010m"


# --- TestQuantityParseEmit ------------------------------------------------------------------------

PARSE_EMIT = [
    ("1Ki", "1Ki"),
    ("1Mi", "1Mi"),
    ("1Gi", "1Gi"),
    ("1024Mi", "1Gi"),
    ("1000M", "1G"),
    (".001Ki", "1024m"),
    (".000001Ki", "1024u"),
    (".000000001Ki", "1024n"),
    (".000000000001Ki", "2n"),
]


@pytest.mark.parametrize(("text", "expect"), PARSE_EMIT)
def test_parse_emit(text: str, expect: str) -> None:
    assert str(parse_quantity(text)) == expect
    assert str(parse_quantity("-" + text)) == "-" + expect


# The brief's examples of canonical strings.
@pytest.mark.parametrize(
    ("text", "expect"),
    [("1.5", "1500m"), ("0.5Ki", "512"), ("1E3", "1e3"), ("1536Mi", "1536Mi"), ("2048Ki", "2Mi"), ("1.5Gi", "1536Mi")],
)
def test_canonical_examples(text: str, expect: str) -> None:
    assert str(parse_quantity(text)) == expect


# --- TestParseQuantity: 18..20 digit boundaries around int64 --------------------------------------

BOUNDARY = [
    # (input, exact amount, canonical string or "" when the input is already canonical)
    ("-999999999999999999", "-999999999999999999", ""),
    ("999999999999999999", "999999999999999999", ""),
    ("-999999999999999999.0", "-999999999999999999", "-999999999999999999"),
    ("999999999999999999.0", "999999999999999999", "999999999999999999"),
    ("-999999999999999999.1", "-999999999999999999.1", "-999999999999999999100m"),
    ("999999999999999999.1", "999999999999999999.1", "999999999999999999100m"),
    ("-9999999999999999999", "-9999999999999999999", ""),
    ("9999999999999999999", "9999999999999999999", ""),
    ("-1E", "-1000000000000000000", ""),
    ("1E", "1000000000000000000", ""),
    ("-1000000000000000000", "-1000000000000000000", "-1E"),
    ("1000000000000000000", "1000000000000000000", "1E"),
    ("-9999999999999999999.0", "-9999999999999999999", "-9999999999999999999"),
    ("9999999999999999999.0", "9999999999999999999", "9999999999999999999"),
    ("-1.0E", "-1000000000000000000", "-1E"),
    ("1.0E", "1000000000000000000", "1E"),
    ("-1000000000000000000.0", "-1000000000000000000", "-1E"),
    ("1000000000000000000.0", "1000000000000000000", "1E"),
    ("-9999999999999999999000m", "-9999999999999999999", "-9999999999999999999"),
    ("9999999999999999999000m", "9999999999999999999", "9999999999999999999"),
    ("-9999999999999999999.1", "-9999999999999999999.1", "-9999999999999999999100m"),
    ("9999999999999999999.1", "9999999999999999999.1", "9999999999999999999100m"),
    ("-1.0000000000000000001E", "-1000000000000000000.1", "-1000000000000000000100m"),
    ("1.0000000000000000001E", "1000000000000000000.1", "1000000000000000000100m"),
    ("-1000000000000000000.1", "-1000000000000000000.1", "-1000000000000000000100m"),
    ("1000000000000000000.1", "1000000000000000000.1", "1000000000000000000100m"),
    ("-1.000000000000000001E", "-1000000000000000001", "-1000000000000000001"),
    ("1.000000000000000001E", "1000000000000000001", "1000000000000000001"),
    ("-1000000000000000001", "-1000000000000000001", ""),
    ("1000000000000000001", "1000000000000000001", ""),
    ("-10E", "-10000000000000000000", ""),
    ("10E", "10000000000000000000", ""),
    ("-10000000000000000000", "-10000000000000000000", "-10E"),
    ("10000000000000000000", "10000000000000000000", "10E"),
    ("-10.0E", "-10000000000000000000", "-10E"),
    ("10.0E", "10000000000000000000", "10E"),
    ("-10000000000000000000.0", "-10000000000000000000", "-10E"),
    ("10000000000000000000.0", "10000000000000000000", "10E"),
    ("-10000000000000000000000m", "-10000000000000000000", "-10E"),
    ("10000000000000000000000m", "10000000000000000000", "10E"),
    ("-10.0000000000000000001E", "-10000000000000000000.1", "-10000000000000000000100m"),
    ("10.0000000000000000001E", "10000000000000000000.1", "10000000000000000000100m"),
    ("-10000000000000000000.1", "-10000000000000000000.1", "-10000000000000000000100m"),
    ("10000000000000000000.1", "10000000000000000000.1", "10000000000000000000100m"),
    ("-10.000000000000000001E", "-10000000000000000001", "-10000000000000000001"),
    ("10.000000000000000001E", "10000000000000000001", "10000000000000000001"),
    ("-10000000000000000001", "-10000000000000000001", ""),
    ("10000000000000000001", "10000000000000000001", ""),
    ("-9223372036854775809", "-9223372036854775809", ""),
    ("9223372036854775806", "9223372036854775806", ""),
    ("-9223372036854775809.0", "-9223372036854775809", "-9223372036854775809"),
    ("9223372036854775806.0", "9223372036854775806", "9223372036854775806"),
    ("-9223372036854775809000m", "-9223372036854775809", "-9223372036854775809"),
    ("9223372036854775806000m", "9223372036854775806", "9223372036854775806"),
    ("-9223372036854775809.1", "-9223372036854775809.1", "-9223372036854775809100m"),
    ("9223372036854775806.1", "9223372036854775806.1", "9223372036854775806100m"),
    ("-9223372036854775808", "-9223372036854775808", ""),
    ("9223372036854775807", "9223372036854775807", ""),
    ("-9223372036854775808.0", "-9223372036854775808", "-9223372036854775808"),
    ("9223372036854775807.0", "9223372036854775807", "9223372036854775807"),
    ("-9223372036854775808000m", "-9223372036854775808", "-9223372036854775808"),
    ("9223372036854775807000m", "9223372036854775807", "9223372036854775807"),
    ("-9223372036854775808.1", "-9223372036854775808.1", "-9223372036854775808100m"),
    ("9223372036854775807.1", "9223372036854775807.1", "9223372036854775807100m"),
    ("-9223372036854775807", "-9223372036854775807", ""),
    ("9223372036854775808", "9223372036854775808", ""),
    ("-9223372036854775807.0", "-9223372036854775807", "-9223372036854775807"),
    ("9223372036854775808.0", "9223372036854775808", "9223372036854775808"),
    ("-9223372036854775807000m", "-9223372036854775807", "-9223372036854775807"),
    ("9223372036854775808000m", "9223372036854775808", "9223372036854775808"),
    ("-9223372036854775807.1", "-9223372036854775807.1", "-9223372036854775807100m"),
    ("9223372036854775808.1", "9223372036854775808.1", "9223372036854775808100m"),
]


@pytest.mark.parametrize(("text", "amount", "canonical"), BOUNDARY, ids=[row[0] for row in BOUNDARY])
def test_parse_quantity_int64_boundaries(text: str, amount: str, canonical: str) -> None:
    q = parse_quantity(text)
    assert q.amount == Decimal(amount)
    assert str(q) == (canonical or text)


# --- Value() and MilliValue() rounding ------------------------------------------------------------

# TestQuantityRoundUp, at scale 0 (Value) and scale -3 (MilliValue): non-whole amounts round away
# from zero, so -9.01 goes to -10.
@pytest.mark.parametrize(
    ("text", "value", "milli"),
    [("9.01", 10, 9010), ("-9.01", -10, -9010)],
)
def test_round_up(text: str, value: int, milli: int) -> None:
    q = parse_quantity(text)
    assert q.value() == value
    assert q.milli_value() == milli


# TestScaledValue: 1 at fromScale, read at scale 0 (value) and Milli (milli_value).
@pytest.mark.parametrize(
    ("from_scale", "value", "milli"),
    [(-9, 1, 1), (-6, 1, 1), (-3, 1, 1), (0, 1, 1000), (2, 100, 100_000)],
)
def test_scaled_value(from_scale: int, value: int, milli: int) -> None:
    q = Quantity(dec(1, from_scale), DEC)
    assert q.value() == value
    assert q.milli_value() == milli


# TestNewSet: NewQuantity(value, format).String(), and the string parses back to the value.
@pytest.mark.parametrize(
    ("value", "fmt", "expect"),
    [(1, DEC, "1"), (1000, DEC, "1k"), (1234000, DEC, "1234k"), (1024, BIN, "1Ki"), (1024 * 1024, BIN, "1Mi"), (1000000, EXP, "1e6")],
)
def test_new_set(value: int, fmt: str, expect: str) -> None:
    assert format_quantity(value, fmt) == expect
    assert format_quantity(Decimal(value), fmt) == expect
    assert parse_quantity(expect).value() == value


# TestMilliNewSet: NewMilliQuantity(value, format).String(); exact rows parse back to the millis.
@pytest.mark.parametrize(
    ("millis", "fmt", "expect", "exact"),
    [
        (1, DEC, "1m", True),
        (1000, DEC, "1", True),
        (1234000, DEC, "1234", True),
        (1024, BIN, "1024m", False),  # format changes
        (1000000, EXP, "1e3", True),
        (1024 * 1024, BIN, "1048576m", False),  # format changes
    ],
)
def test_milli_new_set(millis: int, fmt: str, expect: str, exact: bool) -> None:
    assert format_quantity(dec(millis, -3), fmt) == expect
    if exact:
        assert parse_quantity(expect).milli_value() == millis


# TestNewScaledSet: NewScaledQuantity(value, scale).String() and back.
@pytest.mark.parametrize(
    ("value", "scale", "expect"),
    [(1, -9, "1n"), (1000, -9, "1u"), (1, -6, "1u"), (1000, -6, "1m"), (1, -3, "1m"), (1000, -3, "1"), (1, 0, "1"), (0, -9, "0"), (0, -6, "0"), (0, -3, "0"), (0, 0, "0")],
)
def test_new_scaled_set(value: int, scale: int, expect: str) -> None:
    assert format_quantity(dec(value, scale), DEC) == expect
    assert parse_quantity(expect).amount == dec(value, scale)


@pytest.mark.parametrize(
    ("text", "value", "milli"),
    [
        ("1Mi", 1024 * 1024, 1024 * 1024 * 1000),  # TestQuantityValueSet
        ("100m", 1, 100),
        ("1n", 1, 1),
        ("1500u", 1, 2),
        ("-1.5", -2, -1500),
        ("-100m", -1, -100),
        ("1.0000000000000000001E", 1000000000000000001, MAX_INT64),  # millis overflow int64: saturate
        ("10E", MAX_INT64, MAX_INT64),
        ("-10E", MIN_INT64, MIN_INT64),
        ("1e999999999", MAX_INT64, MAX_INT64),  # no giant int is built
        ("9Ei", MAX_INT64, MAX_INT64),
        ("9223372036854775807", MAX_INT64, MAX_INT64),
        ("9223372036854775.807", 9223372036854776, MAX_INT64),
        ("9223372036854775.806", 9223372036854776, 9223372036854775806),
    ],
)
def test_value_and_milli_value(text: str, value: int, milli: int) -> None:
    q = parse_quantity(text)
    assert q.value() == value
    assert q.milli_value() == milli


def test_quantity_cmp() -> None:
    # TestQuantityCmp, on the exact amounts.
    assert parse_quantity("0").amount == parse_quantity("0").amount
    assert parse_quantity("100m").amount > parse_quantity("50m").amount
    assert parse_quantity("50m").amount < parse_quantity("100m").amount
    assert parse_quantity("10000T").amount > parse_quantity("100Gi").amount


# TestJSONWhitespace's unquoted JSON numbers; floats come from their shortest repr.
@pytest.mark.parametrize(
    ("number", "expect"),
    [(1, "1"), (10, "10"), (-1, "-1"), (0, "0"), (1.5, "1500m"), (0.1, "100m"), (2.0, "2"), (1e20, "100e18"), (10**30, "1e30"), (10**30 + 1, "1000000000000000000000000000001")],
)
def test_json_numbers(number: int | float, expect: str) -> None:
    assert str(parse_quantity(number)) == expect


@pytest.mark.parametrize("bad", [True, False, None, b"1", Decimal("1"), [1], float("nan"), float("inf"), -float("inf")])
def test_non_string_non_number_inputs_raise(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)  # type: ignore[arg-type]


# --- Kubernetes edges worth pinning ----------------------------------------------------------------


def test_binary_cap_is_on_magnitude_and_only_for_binary() -> None:
    assert parse_quantity("8Ei") == Quantity(Decimal(MAX_INT64), BIN)
    assert str(parse_quantity("8Ei")) == "9223372036854775807"
    assert parse_quantity("-8Ei").amount == -MAX_INT64
    assert parse_quantity("7Ei").amount == 7 * 2**60  # below the cap: exact
    assert parse_quantity("9223372036854775808").amount == 2**63  # decimal: no cap
    assert parse_quantity("1" + "0" * 40).amount == 10**40


def test_exponent_is_truncated_to_int32_like_kubernetes() -> None:
    # suffix.go: int32(strconv.ParseInt(...)); only the low 32 bits of the exponent survive.
    assert parse_quantity("1e4294967296").amount == 1
    assert parse_quantity("1e4294967299").amount == 1000
    assert parse_quantity("1e2147483648").amount == dec(1, -9)  # wraps to -2**31, then rounds up to 1n


def test_huge_and_tiny_exponents_stay_exact_and_cheap() -> None:
    assert str(parse_quantity("1e2147483647")) == "10e2147483646"
    assert parse_quantity("1e-2147483648").amount == dec(1, -9)
    assert str(parse_quantity("5e-300")) == "1e-9"
    long_digits = "1" * 5000  # past Python's int-to-str limit
    assert str(parse_quantity(long_digits)) == long_digits
    assert str(parse_quantity(long_digits + "Ki")) == str(MAX_INT64)  # capped
    assert parse_quantity(long_digits + "e-4990").amount == Decimal("1111111111.111111112")  # rounded up
    assert str(parse_quantity("0." + "0" * 5000 + "1")) == "1n"


def test_global_decimal_context_is_neither_used_nor_changed() -> None:
    before = decimal.getcontext().copy()
    with decimal.localcontext() as tiny:
        tiny.prec = 3
        tiny.traps[decimal.Inexact] = True
        assert parse_quantity("9223372036854775807").value() == MAX_INT64
        assert str(parse_quantity("123456789.123456789123")) == "123456789123456790n"
        assert parse_quantity("9223372036854775807Ki").amount == MAX_INT64
        assert format_quantity(Decimal("123456789012345678901234567890"), BIN) == "123456789012345678901234567890"
        assert format_quantity(2**62, BIN) == "4Ei"
    after = decimal.getcontext()
    assert (after.prec, after.rounding, after.Emax, after.Emin) == (before.prec, before.rounding, before.Emax, before.Emin)


def test_binary_si_printing_rules() -> None:
    assert format_quantity(1023, BIN) == "1023"  # below 1024: DecimalSI
    assert format_quantity(-1023, BIN) == "-1023"
    assert format_quantity(Decimal("1024.5"), BIN) == "1024500m"  # not whole: DecimalSI
    assert format_quantity(2**70, BIN) == "1024Ei"  # no suffix past Ei: the mantissa grows
    assert format_quantity(Decimal("1E+4"), BIN) == "10000"
    assert format_quantity(Decimal("2.048E+3"), BIN) == "2Ki"
    assert format_quantity(Decimal("1e-12"), DEC) == "1e-12"  # finer than n: exponent form
    assert format_quantity(Decimal("-0"), BIN) == "0"


@pytest.mark.parametrize(
    ("amount", "fmt"),
    [(Decimal("1"), "binarySI"), (Decimal("1"), ""), (1.5, DEC), (True, DEC), ("1", DEC), (Decimal("NaN"), DEC), (Decimal("Infinity"), BIN)],
)
def test_format_quantity_rejects_bad_arguments(amount: object, fmt: str) -> None:
    with pytest.raises(QuantityError):
        format_quantity(amount, fmt)  # type: ignore[arg-type]


def test_quantity_validates_its_fields() -> None:
    assert Quantity(5, DEC).amount == Decimal(5)  # type: ignore[arg-type]
    assert isinstance(Quantity(5, DEC).amount, Decimal)  # type: ignore[arg-type]
    with pytest.raises(QuantityError):
        Quantity(Decimal("NaN"), DEC)
    with pytest.raises(QuantityError):
        Quantity(Decimal(1), "Binary")
    with pytest.raises(QuantityError):
        Quantity(1.5, DEC)  # type: ignore[arg-type]


def test_quantity_is_an_immutable_value() -> None:
    q = parse_quantity("100m")
    assert q == Quantity(Decimal("0.1"), DEC)
    assert hash(q) == hash(Quantity(Decimal("0.100"), DEC))
    with pytest.raises(AttributeError):
        q.amount = Decimal(1)  # type: ignore[misc]


# --- properties ----------------------------------------------------------------------------------

_DIGITS = "0123456789"
_SUFFIXES = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_POWERS = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


@st.composite
def quantity_texts(draw: st.DrawFn) -> str:
    sign = draw(st.sampled_from(["", "-", "+"]))
    whole = draw(st.text(_DIGITS, max_size=22))
    fraction = draw(st.none() | st.text(_DIGITS, max_size=22))
    if not whole and not fraction:
        whole = draw(st.text(_DIGITS, min_size=1, max_size=3))
    suffix = draw(
        st.sampled_from(_SUFFIXES)
        | st.builds(
            lambda e, s, n: f"{e}{s}{n}", st.sampled_from("eE"), st.sampled_from(["", "+", "-"]), st.integers(0, 40)
        )
    )
    return sign + whole + ("" if fraction is None else "." + fraction) + suffix


def reference(text: str) -> tuple[Fraction, str]:
    """An independent model of ParseQuantity's arithmetic, in Fractions."""
    match = re.fullmatch(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)", text)
    assert match
    sign, whole, fraction, suffix = match.groups()
    fraction = fraction or ""
    magnitude = Fraction(int(whole or "0")) + Fraction(int(fraction or "0"), 10 ** len(fraction))
    if suffix.endswith("i"):
        magnitude *= 2 ** {"K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}[suffix[0]]
        fmt = BIN
    elif suffix in _POWERS:
        magnitude *= Fraction(10) ** _POWERS[suffix]
        fmt = DEC
    else:
        magnitude *= Fraction(10) ** int(suffix[1:])
        fmt = EXP
    if magnitude:
        magnitude = Fraction(math.ceil(magnitude * 10**9), 10**9)  # up to the next nano
    if fmt == BIN and magnitude > MAX_INT64:
        magnitude = Fraction(MAX_INT64)
    if fmt == BIN and 0 < magnitude < 1:
        fmt = DEC
    return (-magnitude if sign == "-" else magnitude), fmt


def away_from_zero(value: Fraction) -> int:
    whole = math.ceil(value) if value >= 0 else math.floor(value)
    return max(MIN_INT64, min(MAX_INT64, whole))


@given(quantity_texts())
def test_parse_matches_reference_model(text: str) -> None:
    q = parse_quantity(text)
    amount, fmt = reference(text)
    assert Fraction(q.amount) == amount
    assert q.format == fmt
    assert q.value() == away_from_zero(amount)
    assert q.milli_value() == away_from_zero(amount * 1000)


@given(quantity_texts())
def test_canonical_string_round_trips(text: str) -> None:
    q = parse_quantity(text)
    canonical = str(q)
    again = parse_quantity(canonical)
    assert again.amount == q.amount
    assert str(again) == canonical
    # Canonical form: an integer mantissa without leading zeros and one suffix, never a "." or "+".
    assert re.fullmatch(r"0|-?[1-9][0-9]*(?:[numkMGTPE]|[KMGTPE]i|e-?[1-9][0-9]*)?", canonical), canonical


def reference_text(amount: Fraction, fmt: str) -> str:
    """An independent model of Quantity.String(), in Fractions: a whole mantissa with the largest
    binary suffix (whole amounts from 1024 up, else decimal), or the largest power of ten that is a
    multiple of three, spelled n..E or as an exponent."""
    if not amount:
        return "0"
    sign, magnitude = ("-" if amount < 0 else ""), abs(amount)
    if fmt == BIN and magnitude.denominator == 1 and magnitude >= 1024:
        mantissa, power = magnitude.numerator, 0
        while power < 6 and mantissa % 1024 == 0:
            mantissa, power = mantissa // 1024, power + 1
        return sign + str(mantissa) + ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power]
    exponent = -3 * 10  # well below any nano-rounded amount
    while (magnitude / Fraction(10) ** (exponent + 3)).denominator == 1:
        exponent += 3
    mantissa = magnitude / Fraction(10) ** exponent
    suffixes = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
    if fmt != EXP and exponent in suffixes:
        return sign + str(mantissa.numerator) + suffixes[exponent]
    return sign + str(mantissa.numerator) + (f"e{exponent}" if exponent else "")


@pytest.mark.parametrize(("amount", "fmt", "expect"), [
    (Fraction(1024), BIN, "1Ki"), (Fraction(1023), BIN, "1023"), (Fraction(3, 2), BIN, "1500m"),
    (Fraction(1536 * 2**20), BIN, "1536Mi"), (Fraction(2**70), BIN, "1024Ei"), (Fraction(-5, 10**9), DEC, "-5n"),
    (Fraction(1500), DEC, "1500"), (Fraction(10**21), DEC, "1e21"), (Fraction(3000), EXP, "3e3"),
    (Fraction(1, 10), EXP, "100e-3"),
])
def test_reference_text_model(amount: Fraction, fmt: str, expect: str) -> None:
    assert reference_text(amount, fmt) == expect


@example("1Ki")
@example("1023Ki")
@example("0.5Ki")
@example("1500m")
@example("1e21")
@example("-0.1e-1")
@given(quantity_texts())
def test_format_quantity_matches_the_reference_model(text: str) -> None:
    q = parse_quantity(text)
    amount, fmt = reference(text)
    assert format_quantity(q.amount, q.format) == reference_text(amount, fmt)
    assert str(q) == reference_text(amount, fmt)


@given(quantity_texts(), quantity_texts())
def test_value_and_milli_value_are_monotone(a: str, b: str) -> None:
    low, high = sorted((parse_quantity(a), parse_quantity(b)), key=lambda q: q.amount)
    assert low.milli_value() <= high.milli_value()
    assert low.value() <= high.value()


@given(st.decimals(allow_nan=False, allow_infinity=False), st.decimals(allow_nan=False, allow_infinity=False))
def test_milli_value_is_monotone_on_any_amount(a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    assert Quantity(low, DEC).milli_value() <= Quantity(high, DEC).milli_value()


@given(st.integers(min_value=-(2**80), max_value=2**80), st.sampled_from([BIN, DEC, EXP]))
def test_formatted_integers_parse_back_to_themselves(value: int, fmt: str) -> None:
    text = format_quantity(value, fmt)
    if text.endswith("i") and abs(value) > MAX_INT64:  # printed with a binary suffix: capped on parse
        assert parse_quantity(text).amount == (MAX_INT64 if value > 0 else -MAX_INT64)
    else:
        assert parse_quantity(text).amount == value


@given(st.text(alphabet="0123456789.+-eEinumkKMGTP x") | st.text())
def test_any_text_parses_or_raises_quantity_error(text: str) -> None:
    try:
        q = parse_quantity(text)
    except QuantityError as error:
        assert repr(text) in str(error)
    else:
        assert isinstance(q.amount, Decimal)
        assert parse_quantity(str(q)).amount == q.amount
