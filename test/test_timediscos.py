"""Tests for discosbackend.timediscos (ACS ticks <-> astropy Time)."""

import math
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

import astropy.units as u
import numpy as np
import pytest
from astropy.time import TIME_FORMATS, Time, TimeDelta
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import discosbackend.timediscos
from discosbackend.timediscos import (
    ACS_EPOCH_TICKS,
    TICKS_PER_DAY,
    TICKS_PER_SECOND,
    acs_to_time,
    acs_to_unix_seconds,
    format_reply_timestamp,
    now_acs,
    parse_request_timestamp,
    time_to_acs,
    unix_seconds_to_acs,
)

# The worked example: unix 1430922782.9708830 (2015-05-06T14:33:02.970883).
EXAMPLE_TICKS = 14_309_227_829_708_830
EXAMPLE_TEXT = "1430922782.9708830"

TICKS = st.integers(min_value=1, max_value=4 * 10**18 - 1)
SLOW = settings(deadline=None, max_examples=200)


def _decimal_text(ticks: int) -> str:
    """Unix-seconds spelling of ``ticks`` with 7 decimals."""
    return f"{ticks // TICKS_PER_SECOND}.{ticks % TICKS_PER_SECOND:07d}"


def _unix_time(ticks: int) -> Time:
    """The same instant built with astropy's own ``unix`` format."""
    seconds, rest = divmod(ticks, TICKS_PER_SECOND)
    return Time(float(seconds), rest / TICKS_PER_SECOND, format="unix")


# -- registration ---------------------------------------------------------


def test_constants():
    assert TICKS_PER_SECOND == 10_000_000
    assert TICKS_PER_DAY == 864_000_000_000


def test_format_registered_on_import():
    assert TIME_FORMATS["discos"] is discosbackend.timediscos.TimeDiscos
    assert "discos" in Time.FORMATS


def test_reimport_and_reload_do_not_crash():
    # In a child process, so that the reload cannot swap the registered
    # class under the rest of the test session.
    code = (
        "import importlib, sys\n"
        "from astropy.time import TIME_FORMATS\n"
        "import discosbackend.timediscos as m\n"
        "import discosbackend.timediscos\n"
        "m = importlib.reload(m)\n"
        "assert TIME_FORMATS['discos'] is m.TimeDiscos\n"
        f"assert m.acs_to_time({EXAMPLE_TICKS}).discos == {EXAMPLE_TICKS}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- the worked example ---------------------------------------------------


def test_example_ticks_to_time():
    t = acs_to_time(EXAMPLE_TICKS)
    assert t.scale == "utc"
    assert t.format == "discos"
    reference = Time(1430922782, format="unix") + TimeDelta(
        9_708_830 * 100, format="sec", scale="tai"
    ) / 10**9
    assert abs((t - reference).to_value(u.ns)) < 1
    assert time_to_acs(reference) == EXAMPLE_TICKS
    assert t.isot == "2015-05-06T14:33:02.971"


def test_example_time_to_ticks():
    t = acs_to_time(EXAMPLE_TICKS)
    value = t.to_value("discos")
    assert isinstance(value, int)
    assert value == EXAMPLE_TICKS
    assert t.discos == EXAMPLE_TICKS
    assert t.value == EXAMPLE_TICKS
    assert time_to_acs(t) == EXAMPLE_TICKS
    assert Time(1430922782, format="unix").discos == 14_309_227_820_000_000


def test_example_parse_and_format():
    by_ticks = parse_request_timestamp(str(EXAMPLE_TICKS))
    by_seconds = parse_request_timestamp(EXAMPLE_TEXT)
    assert by_ticks == by_seconds
    assert time_to_acs(by_seconds) == EXAMPLE_TICKS
    assert format_reply_timestamp(by_ticks) == EXAMPLE_TEXT


def test_epoch():
    assert acs_to_time(0) == Time("1970-01-01T00:00:00", scale="utc")
    assert Time("1970-01-02T00:00:00", scale="utc").discos == TICKS_PER_DAY


# -- the Time format itself ----------------------------------------------


def test_plain_small_int_is_accepted():
    assert Time(2**53, format="discos").discos == 2**53
    assert Time(12345, format="discos").discos == 12345


def test_present_day_floats_and_ints_are_taken_to_the_nearest_float_tick():
    # astropy turns ints into float64 before the format sees them: exact up
    # to 2**53, then to the float's own precision (discos-backend 1.4 code
    # does Time(ticks, format="discos")).
    assert Time(EXAMPLE_TICKS + 1, format="discos").discos == float(EXAMPLE_TICKS + 1)
    assert Time(float(EXAMPLE_TICKS), format="discos").discos == EXAMPLE_TICKS
    assert Time(1.5, format="discos").discos == 2  # the nearest tick
    assert Time([1, 2.5], format="discos").discos.tolist() == [1, 2]


@pytest.mark.parametrize("bad", [math.nan, math.inf, "123"])
def test_non_numeric_input_is_refused(bad):
    with pytest.raises(ValueError):
        Time(bad, format="discos")


def test_out_of_int64_range_is_refused():
    with pytest.raises(ValueError, match="64-bit"):
        acs_to_time(2**63)
    assert acs_to_time(2**63 - 1).discos == 2**63 - 1


def test_val2_is_added_exactly():
    assert Time(3.0, 4.0, format="discos").discos == 7
    big = np.array(EXAMPLE_TICKS, dtype=object)
    assert Time(big, 1.0, format="discos").discos == EXAMPLE_TICKS + 1


def test_arrays():
    ticks = [1, EXAMPLE_TICKS + 1, 4 * 10**18 - 1]
    t = Time(np.array(ticks, dtype=object), format="discos")
    value = t.discos
    assert isinstance(value, np.ndarray)
    assert value.dtype == np.int64
    assert value.tolist() == ticks
    assert Time([[1.0, 2.0], [3.0, 4.0]], format="discos").discos.tolist() == [
        [1, 2],
        [3, 4],
    ]
    assert t[1].discos == EXAMPLE_TICKS + 1


def test_negative_ticks_before_1970():
    t = acs_to_time(-1)
    assert t.discos == -1
    assert t < acs_to_time(0)
    assert acs_to_time(-TICKS_PER_DAY) == Time("1969-12-31", scale="utc")


def test_other_scales_convert_through_utc():
    utc = acs_to_time(EXAMPLE_TICKS)
    assert utc.tai.discos == EXAMPLE_TICKS
    assert utc.tdb.to_value("discos") == EXAMPLE_TICKS
    tai = Time(12345, format="discos", scale="tai")
    assert tai.scale == "tai"
    assert tai == Time(12345, format="discos")
    assert tai.discos == 12345


def test_value_in_other_scale_needs_parent():
    fmt = discosbackend.timediscos.TimeDiscos(
        np.array(2_440_588.0), np.array(-0.5), "tai", None, "*", "*", from_jd=True
    )
    with pytest.raises(ValueError, match="parent"):
        fmt.to_value()


def test_subformats():
    t = acs_to_time(EXAMPLE_TICKS)
    assert t.to_value("discos", subfmt="*") == EXAMPLE_TICKS
    with pytest.raises(ValueError):
        t.to_value("discos", subfmt="long")


@SLOW
@given(TICKS)
def test_round_trip_time(ticks):
    assert acs_to_time(ticks).to_value("discos") == ticks
    as_object = Time(np.array(ticks, dtype=object), format="discos")
    assert as_object.discos == ticks


@SLOW
@given(TICKS)
def test_round_trip_parse_both_spellings(ticks):
    assume(ticks < ACS_EPOCH_TICKS)  # larger tick counts are on DISCOS's own clock
    by_ticks = parse_request_timestamp(str(ticks))
    by_seconds = parse_request_timestamp(_decimal_text(ticks))
    assert time_to_acs(by_ticks) == ticks
    assert time_to_acs(by_seconds) == ticks
    assert by_ticks == by_seconds
    assert format_reply_timestamp(by_ticks) == _decimal_text(ticks)


@SLOW
@given(TICKS)
def test_agrees_with_astropy_unix(ticks):
    ours, theirs = acs_to_time(ticks), _unix_time(ticks)
    # Compare the UTC (jd1, jd2) pairs directly: subtracting Time objects
    # would go through TAI and warn about far-future leap seconds.
    days = (ours.jd1 - theirs.jd1) + (ours.jd2 - theirs.jd2)
    assert abs(days * 86_400e6) < 1


@pytest.mark.parametrize(
    "iso",
    [
        "2015-05-06T14:33:02.970883",
        "2016-12-31T23:59:59.5",
        "2016-12-31T23:59:60.5",  # inside a leap second
        "2017-01-01T00:00:00",
        "2025-06-30T12:00:00.0000001",
        "1999-12-31T23:59:59.9999999",
    ],
)
def test_matches_unix_format_including_leap_seconds(iso):
    t = Time(iso, scale="utc", precision=7)
    unix = t.to_value("unix", subfmt="decimal")
    assert abs(t.discos - unix * TICKS_PER_SECOND) <= 1
    assert abs((acs_to_time(t.discos) - t).to_value(u.us)) < 1


# -- unix seconds helpers -------------------------------------------------


@pytest.mark.parametrize(
    "seconds, ticks",
    [
        (0, 0),
        (1430922782, 14_309_227_820_000_000),
        (Decimal(EXAMPLE_TEXT), EXAMPLE_TICKS),
        (Fraction(EXAMPLE_TICKS, TICKS_PER_SECOND), EXAMPLE_TICKS),
        (0.5, 5_000_000),
        (Decimal("1.00000004"), 10_000_000),
        (Decimal("1.00000006"), 10_000_001),
        (Decimal("-1.5"), -15_000_000),
    ],
)
def test_unix_seconds_to_acs(seconds, ticks):
    assert unix_seconds_to_acs(seconds) == ticks


@pytest.mark.parametrize("bad", [math.nan, math.inf, Decimal("NaN"), Decimal("-Infinity")])
def test_unix_seconds_to_acs_non_finite(bad):
    with pytest.raises(ValueError):
        unix_seconds_to_acs(bad)


@pytest.mark.parametrize("bad", ["1.5", None, True, 1j])
def test_unix_seconds_to_acs_bad_type(bad):
    with pytest.raises(TypeError):
        unix_seconds_to_acs(bad)


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_unix_seconds_round_trip(ticks):
    seconds = acs_to_unix_seconds(ticks)
    assert isinstance(seconds, Fraction)
    assert unix_seconds_to_acs(seconds) == ticks


def test_time_to_acs_needs_scalar():
    with pytest.raises(ValueError):
        time_to_acs(Time([1.0, 2.0], format="discos"))


def test_acs_to_time_needs_int():
    with pytest.raises(TypeError):
        acs_to_time(True)
    with pytest.raises(TypeError):
        acs_to_time(1.0)


# -- request parsing ------------------------------------------------------


@pytest.mark.parametrize(
    "text, ticks",
    [
        ("1", 1),
        ("1430922782.5", 14_309_227_825_000_000),
        ("0.0000001", 1),
        ("1.00000004", 10_000_000),  # more than 7 decimals: nearest tick
        ("1.00000006", 10_000_001),
        ("0001.0", 10_000_000),
        (str(ACS_EPOCH_TICKS - 1), ACS_EPOCH_TICKS - 1),  # the year 2357 on the 1970 clock
        (str(ACS_EPOCH_TICKS + 17_000_000_001_234_567), 17_000_000_001_234_567),  # ACS clock
        (str(2**63 - 1), 2**63 - 1 - ACS_EPOCH_TICKS),
    ],
)
def test_parse_valid(text, ticks):
    assert time_to_acs(parse_request_timestamp(text)) == ticks


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "0.0",
        "000",
        "0.00000004",  # rounds to 0 ticks
        "-1",
        "-1.5",
        "+1",
        "",
        " ",
        " 1",
        "1 ",
        "1\n",
        "1.",
        ".5",
        "1.2.3",
        "1e9",
        "1.5e3",
        "nan",
        "NaN",
        "inf",
        "Infinity",
        "0x10",
        "1_000",
        "١٢٣",  # non-ASCII digits
        "abc",
        str(2**63),
        "9" * 5000,
        None,
        123,
    ],
)
def test_parse_invalid(text):
    with pytest.raises(ValueError, match="^invalid timestamp") as info:
        parse_request_timestamp(text)
    assert str(info.value) == f"invalid timestamp {text!r}"


# -- reply formatting -----------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (acs_to_time(EXAMPLE_TICKS), EXAMPLE_TEXT),
        (acs_to_time(1), "0.0000001"),
        (acs_to_time(0), "0.0000000"),
        (1430922782.5, "1430922782.5000000"),
        (1430922782.970883, "1430922782.9708829"),  # the float is just below
        (1.5, "1.5000000"),
        (1.0, "1.0000000"),
        (0.0, "0.0000000"),
        (-0.0, "0.0000000"),
        (np.float64(2.25), "2.2500000"),
        (1430922782, "1430922782.0000000"),
        (0, "0.0000000"),
        (Decimal(EXAMPLE_TEXT), EXAMPLE_TEXT),
        (Decimal("1.5"), "1.5000000"),
        (Decimal("1.123456789"), "1.1234568"),
        (Fraction(1, 3), "0.3333333"),
        (Fraction(EXAMPLE_TICKS, TICKS_PER_SECOND), EXAMPLE_TEXT),
    ],
)
def test_format(value, text):
    assert format_reply_timestamp(value) == text


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        -1e-9,
        -1,
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("-1"),
        Fraction(-1, 3),
        acs_to_time(-1),
        Time([1.0, 2.0], format="discos"),
        "1.5e3",
        "clock error",
        None,
        True,
        [1.0],
        object(),
        np.datetime64("NaT"),
    ],
)
def test_format_invalid(value):
    with pytest.raises(ValueError):
        format_reply_timestamp(value)


@given(st.floats(min_value=0, max_value=4e11))
def test_format_float_always_seven_decimals(value):
    text = format_reply_timestamp(value)
    whole, dot, decimals = text.partition(".")
    assert dot == "." and whole.isdigit() and len(decimals) == 7
    assert abs(Decimal(text) - Decimal(value)) <= Decimal("0.00000005")


def test_now_acs():
    before = time_to_acs(Time.now())
    now = now_acs()
    after = time_to_acs(Time.now())
    assert isinstance(now, int)
    assert before - TICKS_PER_SECOND <= now <= after + TICKS_PER_SECOND
