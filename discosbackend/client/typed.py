"""Typed helpers for the standard commands, shared by both clients.

Each helper builds a :class:`Call`: the request's name and wire arguments,
and the function that turns the ``ok`` reply into a Python value.  The
values are parsed with the reply shapes declared in
:data:`discosbackend.commands.COMMANDS`, the same ones the server formats
with.  :class:`TypedCommands` turns every standard command into a method;
a client class inherits it and implements :meth:`TypedCommands._perform`:
the blocking client returns the value, the Twisted clients return a
Deferred that fires with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from numbers import Integral, Real
from typing import Any, Callable, Generic, NamedTuple, TypeAlias, TypeVar

from astropy.time import Time

from discosbackend import timediscos
from discosbackend.commands import COMMANDS, UNCHANGED, VERSION
from discosbackend.errors import ArgumentError
from discosbackend.grammar import Message
from discosbackend.client.errors import ProtocolError

__all__ = ["Status", "Call", "TypedCommands", "Timestamp", "format_argument",
           "timestamp_ticks", "parse_values"]

T = TypeVar("T")

#: What the helpers accept as a time: astropy ``Time``, an aware or UTC
#: ``datetime``, or Unix seconds (int, float, Decimal, Fraction).
Timestamp: TypeAlias = Time | datetime | float | int | Decimal | Fraction


class Status(NamedTuple):
    """The values of a ``status`` reply."""

    timestamp: Time
    status: str
    acquiring: bool


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to make and how to read its ``ok`` reply."""

    name: str
    arguments: tuple[str, ...]
    convert: Callable[[Message], T]


def timestamp_ticks(value: Timestamp) -> int:
    """ACS ticks (100 ns since 1970 UTC) of ``value``, exact for ``Time``.

    Numbers are Unix seconds; a naive ``datetime`` is taken as UTC.
    """
    if isinstance(value, Time):
        return timediscos.time_to_acs(value)
    if isinstance(value, datetime):
        return timediscos.time_to_acs(Time(value, scale="utc"))
    if isinstance(value, bool) or not isinstance(value, (Real, Decimal)):
        raise TypeError(f"a time is an astropy Time, a datetime or unix seconds, "
                        f"not {type(value).__name__}")
    if isinstance(value, Integral):
        value = int(value)
    elif isinstance(value, Real) and not isinstance(value, Fraction):
        value = float(value)
    return timediscos.unix_seconds_to_acs(value)


def format_argument(value: object) -> str:
    """The wire text of one request argument.

    Strings go as they are, booleans as ``1``/``0``, integers in decimal,
    other real numbers as Python writes floats (finite only), astropy
    ``Time`` as ACS ticks (the form the DISCOS client sends).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (Time, datetime)):
        return str(timestamp_ticks(value))
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, (Real, Decimal)):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"cannot send {value!r}: not a finite number")
        return repr(number)
    raise TypeError(f"cannot send a {type(value).__name__} as a request argument")


def parse_values(name: str, reply: Message) -> list[Any]:
    """The values of ``ok`` ``reply`` to command ``name``, parsed by its declaration.

    Values of commands the table does not know come back as text.  Raises
    :class:`~discosbackend.client.errors.ProtocolError` when the values do
    not have the declared shape.
    """
    command = COMMANDS.get(name)
    if command is None:
        return list(reply.arguments)
    if not command.reply:
        return []  # nothing to report; extra values are ignored, as the server does
    try:
        values = command.parse_reply(reply.arguments)
    except ArgumentError as error:
        raise ProtocolError(f"bad reply {str(reply)!r}: {error}") from None
    for value in values:
        if isinstance(value, Time):
            value.format = "isot"  # readable; the value stays exact to the tick
    return values


def _nothing(_reply: Message) -> None:
    return None


def _first(name: str) -> Callable[[Message], Any]:
    def convert(reply: Message) -> Any:
        return parse_values(name, reply)[0]
    return convert


def _all(name: str) -> Callable[[Message], list[Any]]:
    def convert(reply: Message) -> list[Any]:
        return parse_values(name, reply)
    return convert


def _status(reply: Message) -> Status:
    return Status(*parse_values("status", reply))


def _unchanged_or(value: object) -> str:
    return UNCHANGED if value is None else format_argument(value)


def _action(name: str, *arguments: object) -> Call[None]:
    return Call(name, tuple(format_argument(argument) for argument in arguments), _nothing)


def _frequency_arguments(frequency: float | None, bandwidth: float | None) -> tuple[str, ...]:
    if frequency is None and bandwidth is None:
        return ()
    return (format_argument(frequency or 0), format_argument(bandwidth or 0))


def _time_arguments(at: Timestamp | None) -> tuple[str, ...]:
    return () if at is None else (str(timestamp_ticks(at)),)


class TypedCommands:
    """One method per standard command; subclasses implement :meth:`_perform`.

    With :class:`~discosbackend.client.BlockingClient` each method returns
    the value shown; with the Twisted clients it returns a Deferred that
    fires with it.  A ``fail``/``invalid`` reply raises (or fails with)
    :class:`~discosbackend.client.errors.CommandFailed` /
    :class:`~discosbackend.client.errors.CommandInvalid`.  Bad argument
    values raise ``TypeError``/``ValueError`` at once, before anything is sent.
    """

    def _perform(self, call: Call[T]) -> Any:
        """Send ``call``'s request and convert its ``ok`` reply with ``call.convert``."""
        raise NotImplementedError

    def call(self, name: str, *arguments: object) -> Any:
        """Any command: the ``ok`` reply's values, parsed as the command declares.

        Values of commands unknown to :data:`~discosbackend.commands.COMMANDS`
        (a backend's extensions) come back as strings.
        """
        return self._perform(Call(name, tuple(format_argument(argument)
                                              for argument in arguments), _all(name)))

    def status(self) -> Any:
        """``status`` → :class:`Status` (timestamp as astropy ``Time``, word, bool)."""
        return self._perform(Call("status", (), _status))

    def version(self) -> Any:
        """``version`` → the protocol version the server speaks, e.g. ``'1.4'``."""
        return self._perform(Call(VERSION, (), _first(VERSION)))

    def get_configuration(self) -> Any:
        """``get-configuration`` → the configuration id."""
        return self._perform(Call("get-configuration", (), _first("get-configuration")))

    def set_configuration(self, configuration: str) -> Any:
        """``set-configuration`` → ``None``."""
        return self._perform(_action("set-configuration", configuration))

    def get_integration(self) -> Any:
        """``get-integration`` → the integration time in ms (int)."""
        return self._perform(Call("get-integration", (), _first("get-integration")))

    def set_integration(self, integration: int) -> Any:
        """``set-integration`` → ``None``; ``integration`` in ms."""
        return self._perform(_action("set-integration", integration))

    def get_tpi(self, frequency: float | None = None, bandwidth: float | None = None) -> Any:
        """``get-tpi`` → list of floats, one per section.

        Without ``frequency`` and ``bandwidth`` no arguments are sent; with
        either, both are sent, the missing one as ``0`` (default).
        """
        return self._perform(Call("get-tpi", _frequency_arguments(frequency, bandwidth),
                                  _all("get-tpi")))

    def get_tp0(self, frequency: float | None = None, bandwidth: float | None = None) -> Any:
        """``get-tp0`` → list of floats, one per section (zero level)."""
        return self._perform(Call("get-tp0", _frequency_arguments(frequency, bandwidth),
                                  _all("get-tp0")))

    def get_rms(self) -> Any:
        """``get-rms`` → list of floats, one per section."""
        return self._perform(Call("get-rms", (), _all("get-rms")))

    def time(self) -> Any:
        """``time`` → the backend's clock as astropy ``Time``."""
        return self._perform(Call("time", (), _first("time")))

    def start(self, at: Timestamp | None = None) -> Any:
        """``start`` → ``None``: now, or at ``at`` (sent as ACS ticks)."""
        return self._perform(Call("start", _time_arguments(at), _nothing))

    def stop(self, at: Timestamp | None = None) -> Any:
        """``stop`` → ``None``: now, or at ``at`` (sent as ACS ticks)."""
        return self._perform(Call("stop", _time_arguments(at), _nothing))

    def set_section(self, section: int | None, start_freq: float | None = None,
                    bandwidth: float | None = None, feed: int | None = None,
                    mode: str | int | None = None, sample_rate: float | None = None,
                    bins: int | None = None) -> Any:
        """``set-section`` → ``None``.  ``None`` (or ``"*"``) leaves a value unchanged.

        ``section`` ``-1`` means every section.
        """
        values = (section, start_freq, bandwidth, feed, mode, sample_rate, bins)
        return self._perform(Call("set-section", tuple(_unchanged_or(value) for value in values),
                                  _nothing))

    def cal_on(self, interleave: int | None = None) -> Any:
        """``cal-on`` → ``None``; mark every ``interleave`` samples (``0`` off)."""
        if interleave is None:
            return self._perform(_action("cal-on"))
        return self._perform(_action("cal-on", interleave))

    def set_filename(self, filename: str) -> Any:
        """``set-filename`` → ``None``."""
        return self._perform(_action("set-filename", filename))

    def convert_data(self) -> Any:
        """``convert-data`` → ``None``."""
        return self._perform(_action("convert-data"))

    def set_enable(self, feed1: int, feed2: int) -> Any:
        """``set-enable`` → ``None``."""
        return self._perform(_action("set-enable", feed1, feed2))

    def end_schedule(self) -> Any:
        """``end-schedule`` → ``None``."""
        return self._perform(_action("end-schedule"))

    def backend_park(self) -> Any:
        """``backend-park`` → ``None``."""
        return self._perform(_action("backend-park"))

    def set_shift(self, shift: int) -> Any:
        """``set-shift`` → ``None``."""
        return self._perform(_action("set-shift", shift))
