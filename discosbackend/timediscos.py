"""Exact conversions between DISCOS/ACS timestamps and astropy times.

"ACS time" is an integer count of 100 ns ticks since 1970-01-01 00:00:00 UTC,
ignoring leap seconds exactly like Unix time, so ``ticks == unix_seconds *
10**7``.  Current values (~1.8e16) do not fit exactly in a float, so every
conversion here uses integers or :class:`fractions.Fraction`.

Importing this module registers the astropy time format ``"discos"``.

Caveat: astropy's ``Time()`` converts plain Python/numpy integers to float64
before the format sees them, which is only exact up to 2**53 ticks (mid
1998): ``Time(ticks, format="discos")`` takes today's tick counts (as
discos-backend 1.4 code does) to the nearest tick a float64 can hold, that
is within a tick or two.  Pass the ticks through :func:`acs_to_time` (or as
an object array of Python ints) to get an exact result.

Negative ticks (before 1970) are supported by the time format and by the
conversion helpers, but rejected by :func:`parse_request_timestamp` and
:func:`format_reply_timestamp`, which deal with protocol values.
"""

import datetime
import math
import numbers
import operator
import re
import time
from decimal import Decimal
from fractions import Fraction

import numpy as np
from astropy.time import Time, TimeFormat

__all__ = [
    "TICKS_PER_SECOND",
    "TICKS_PER_DAY",
    "TimeDiscos",
    "acs_to_time",
    "time_to_acs",
    "unix_seconds_to_acs",
    "acs_to_unix_seconds",
    "parse_request_timestamp",
    "format_reply_timestamp",
    "now_acs",
    "ACS_EPOCH_TICKS",
    "CENTINANOSECONDS",
    "parse_unix_time",
    "get_acs_now",
    "unix_to_acs_time",
]

TICKS_PER_SECOND = 10_000_000
#: The discos-backend 1.4 name of :data:`TICKS_PER_SECOND`.
CENTINANOSECONDS = TICKS_PER_SECOND
#: 1970-01-01 on DISCOS's own clock (ACS::Time), which counts 100 ns ticks
#: from 1582-10-15.  A tick count at least this large is taken to be on that
#: clock: on the 1970 one it would be the year 2357.
ACS_EPOCH_TICKS = 122_192_928_000_000_000
#: An integer timestamp at least this large is ticks, not unix seconds
#: (10**11 s is the year 5138; 10**11 ticks is 1970-01-01T02:46:40).
_TICKS_FROM = 10**11
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
_HALF_DAY = TICKS_PER_DAY // 2
# Accepted tick range: anything that fits a signed 64-bit integer.
_MAX_TICKS = 2**63 - 1
# 1970-01-01 00:00:00 UTC as astropy's (jd1, jd2) pair (JD 2440587.5).
_EPOCH_JD1 = 2_440_588.0
_EPOCH_JD2 = -0.5

_TICKS_RE = re.compile(r"[0-9]+")
_SECONDS_RE = re.compile(r"[0-9]+\.[0-9]+")
_INF = math.inf
_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_to_int = np.frompyfunc(operator.index, 1, 1)


def _exact_ticks(val: np.ndarray) -> np.ndarray:
    """Return ``val`` as an object array of Python ints (floats to the nearest tick)."""
    if val.dtype.kind == "f":
        if not np.all(np.isfinite(val)):
            raise TypeError("discos values must be finite tick counts")
        if np.any(np.abs(val) > _MAX_TICKS):
            raise ValueError("discos ticks out of the signed 64-bit range")
        val = np.rint(val).astype(np.int64)
    elif val.dtype.kind not in "iuO":
        raise TypeError("discos values must be integer tick counts")
    ticks = np.asarray(_to_int(val), dtype=object)
    if ticks.size and (ticks.max() > _MAX_TICKS or ticks.min() < -_MAX_TICKS):
        raise ValueError("discos ticks out of the signed 64-bit range")
    return ticks


class TimeDiscos(TimeFormat):
    """ACS time: 100 ns ticks since 1970-01-01 00:00:00 UTC, no leap seconds.

    Like astropy's ``unix`` format every UTC day is 86400 s long; values are
    interpreted in UTC and converted if another ``scale`` is requested.
    """

    name = "discos"

    def _check_val_type(
        self, val1: np.ndarray, val2: np.ndarray | None
    ) -> tuple[np.ndarray, None]:
        """Turn input values into exact Python-int ticks (``val1 + val2``)."""
        ticks = _exact_ticks(val1)
        if val2 is not None:
            ticks = ticks + _exact_ticks(val2)
        return ticks, None

    def set_jds(self, val1: np.ndarray, val2: None) -> None:
        """Set jd1/jd2 from ticks, split exactly into whole days and rest."""
        del val2  # always None, see _check_val_type
        days = np.asarray(val1 // TICKS_PER_DAY, dtype=object)
        jd1 = np.asarray(days, dtype=np.float64) + _EPOCH_JD1
        # The remainder minus half a day is an exact int below 2**40, so jd2
        # comes from a single correctly rounded division.
        rest = np.asarray(val1 - days * TICKS_PER_DAY - _HALF_DAY, dtype=np.float64)
        jd2 = rest / TICKS_PER_DAY
        if self.scale != "utc":
            utc = Time(jd1, jd2, format="jd", scale="utc")
            converted = getattr(utc, self.scale)
            jd1, jd2 = converted.jd1, converted.jd2
        self.jd1, self.jd2 = jd1, jd2

    def to_value(
        self, parent: Time | None = None, out_subfmt: str | None = None
    ) -> int | np.ndarray:
        """Return ticks rounded to the nearest tick (int, or int64 array)."""
        if out_subfmt is not None:
            self._select_subfmts(out_subfmt)
        if self.scale == "utc":
            jd1, jd2 = self.jd1, self.jd2
        elif parent is None:
            raise ValueError("cannot compute value without parent Time object")
        else:
            utc = parent.utc
            jd1, jd2 = utc.jd1, utc.jd2
        day = jd1 - _EPOCH_JD1
        whole = np.round(day)
        rest = np.rint(((day - whole) + (jd2 - _EPOCH_JD2)) * TICKS_PER_DAY)
        ticks = (
            np.asarray(whole, dtype=np.int64).astype(object) * TICKS_PER_DAY
            + np.asarray(rest, dtype=np.int64).astype(object)
        )
        if np.ndim(ticks) == 0:
            return int(ticks)
        return ticks.astype(np.int64)

    value = property(to_value)


def acs_to_time(ticks: int) -> Time:
    """Return the exact UTC :class:`~astropy.time.Time` for ACS ``ticks``."""
    if isinstance(ticks, bool):
        raise TypeError("ticks must be an int, not bool")
    return Time(np.array(operator.index(ticks), dtype=object), format="discos")


def time_to_acs(t: Time) -> int:
    """Return the ACS ticks of scalar ``t``, rounded to the nearest tick."""
    if not t.isscalar:
        raise ValueError("time_to_acs() needs a scalar Time")
    return int(t.to_value("discos"))


def unix_seconds_to_acs(seconds: Fraction | Decimal | int | float) -> int:
    """Convert Unix seconds to ACS ticks exactly (nearest tick, ties to even)."""
    if isinstance(seconds, bool) or not isinstance(
        seconds, (int, float, Decimal, Fraction)
    ):
        raise TypeError(f"unsupported type for unix seconds: {type(seconds)!r}")
    try:
        exact = Fraction(seconds)
    except (ValueError, OverflowError) as err:
        raise ValueError(f"non-finite unix seconds: {seconds!r}") from err
    return round(exact * TICKS_PER_SECOND)


def acs_to_unix_seconds(ticks: int) -> Fraction:
    """Convert ACS ticks to exact Unix seconds."""
    return Fraction(operator.index(ticks), TICKS_PER_SECOND)


def parse_request_timestamp(text: str) -> Time:
    """Parse the timestamp argument of a ``start``/``stop`` request.

    Digits only are ACS ticks, from 1970 or, from :data:`ACS_EPOCH_TICKS` on,
    from 1582-10-15 (DISCOS's own clock); ``digits.digits`` are Unix seconds,
    converted exactly (more than 7 decimals round to the nearest tick, ties
    to even).
    Anything else, or a value that is not > 0 ticks, raises ``ValueError``
    with a message starting with ``invalid timestamp``.
    """
    try:
        if not isinstance(text, str):
            raise ValueError("not a string")
        if _TICKS_RE.fullmatch(text):
            ticks = int(text)
        elif _SECONDS_RE.fullmatch(text):
            ticks = round(Fraction(text) * TICKS_PER_SECOND)
        else:
            raise ValueError("bad syntax")
        if not 0 < ticks <= _MAX_TICKS:
            raise ValueError("out of range")
        ticks = _on_1970_clock(ticks)
    except ValueError as err:  # also int()'s limit on very long digit strings
        raise ValueError(f"invalid timestamp {text!r}") from err
    return acs_to_time(ticks)


def _on_1970_clock(ticks: int) -> int:
    """Ticks counted from 1970, whichever clock ``ticks`` was counted on."""
    return ticks - ACS_EPOCH_TICKS if ticks >= ACS_EPOCH_TICKS else ticks


def _format_ticks(ticks: int) -> str:
    """Format non-negative ticks as Unix seconds with 7 decimals."""
    if ticks < 0:
        raise ValueError(f"negative timestamp: {ticks} ticks")
    seconds, rest = divmod(ticks, TICKS_PER_SECOND)
    return f"{seconds}.{rest:07d}"


def format_reply_timestamp(value: object) -> str:
    """Format a timestamp as Unix seconds with exactly 7 decimals.

    ``value`` may be Unix seconds (a float, an int, a ``Decimal`` or
    ``Fraction``, a numpy number, or a numeric string with any number of
    decimals); an integer of at least 10**11 is a count of 100 ns ticks,
    from 1970 or, from :data:`ACS_EPOCH_TICKS` on, from 1582-10-15; a scalar
    astropy :class:`~astropy.time.Time`; a ``datetime`` (a naive one is UTC);
    or a numpy ``datetime64``.  Every conversion is exact to the tick.
    Raises ``ValueError`` for anything else, and for NaN, infinite, negative
    or unreadable values.
    """
    if isinstance(value, float):  # the usual case, without fractions
        if not 0.0 <= value < _INF:
            raise ValueError(f"invalid timestamp value: {value!r}")
        return f"{value + 0.0:.7f}"  # + 0.0 turns -0.0 into 0.0
    return _format_ticks(_reply_ticks(value))


def _reply_ticks(value: object) -> int:
    """The ticks since 1970 of any timestamp :func:`format_reply_timestamp` takes."""
    if isinstance(value, bool):
        raise ValueError("a bool is not a timestamp")
    if isinstance(value, numbers.Integral):
        number = int(value)
        if number < _TICKS_FROM:
            return number * TICKS_PER_SECOND
        return _on_1970_clock(number)
    if isinstance(value, str):
        if _TICKS_RE.fullmatch(value):
            return _reply_ticks(int(value))
        if not _SECONDS_RE.fullmatch(value):
            raise ValueError(f"not a timestamp: {value!r}")
        return unix_seconds_to_acs(Fraction(value))
    if isinstance(value, (Decimal, Fraction)):
        return unix_seconds_to_acs(value)
    if isinstance(value, numbers.Real):  # numpy floats, for one
        return unix_seconds_to_acs(float(value))
    if isinstance(value, Time):
        return time_to_acs(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        since = value - _UNIX_EPOCH
        return ((since.days * 86_400 + since.seconds) * TICKS_PER_SECOND
                + since.microseconds * 10)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ValueError("NaT is not a timestamp")
        nanoseconds = int(value.astype("datetime64[ns]").astype(np.int64))
        return round(Fraction(nanoseconds, 100))
    raise ValueError(f"unsupported timestamp type: {type(value).__name__}")


def parse_unix_time(text: str) -> Time:
    """The :class:`~astropy.time.Time` of Unix seconds written as text, exactly (1.4 API)."""
    return acs_to_time(unix_seconds_to_acs(Fraction(Decimal(text))))


def unix_to_acs_time(seconds: float | int | Decimal | Fraction) -> Time:
    """The :class:`~astropy.time.Time` of ``seconds`` since 1970, exactly (1.4 API)."""
    return acs_to_time(unix_seconds_to_acs(seconds))


def get_acs_now() -> Time:
    """The current time as a :class:`~astropy.time.Time`, to the tick (1.4 API)."""
    return acs_to_time(now_acs())


def now_acs() -> int:
    """Return the current system time as ACS ticks."""
    return time.time_ns() // 100
