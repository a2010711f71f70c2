"""The Backend contract: one method per protocol command.

Subclass :class:`Backend` and override the methods your hardware supports;
the ones you leave alone answer ``fail`` (``not supported``).  Serve it with
``server.run_server(8978, DBProtocolHandler(MyBackend()))``.

Every method may return its value, a Deferred firing with it, or be
``async def``.  Raise :class:`~discosbackend.errors.BackendError` (or any
:class:`~discosbackend.errors.HandlerException`) to refuse a request with a
reason: the client gets ``!name,fail,<reason>``.

Start and stop, immediate or time-tagged, are implemented here on an
injectable clock: override :meth:`Backend.start_acquisition` and
:meth:`Backend.stop_acquisition` to drive the hardware, and every backend
gets the protocol's scheduling rules right.
"""

from __future__ import annotations

from typing import Any, Sequence

from astropy.time import Time
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from discosbackend import timediscos
from discosbackend.commands import UNCHANGED
from discosbackend.errors import BackendError, NotSupportedError
from discosbackend.reactor import global_reactor

__all__ = ["Backend", "UNCHANGED", "BackendError"]

_log = Logger()


class _Pending:
    """A time-tagged start or stop: when it fires and the call to cancel."""

    def __init__(self, at: float, call: IDelayedCall) -> None:
        self.at = at
        self.call = call

    def cancel(self) -> None:
        if self.call.active():
            self.call.cancel()


class Backend:
    """Base class of backends.  Override what your hardware does.

    ``clock`` is the Twisted reactor (or a ``task.Clock`` in tests) used for
    time-tagged start/stop and for :meth:`time`; it defaults to the global
    reactor.  Subclasses need not call ``__init__``.
    """

    #: Passed to :meth:`set_section` for an argument given as ``*``.
    UNCHANGED = UNCHANGED

    _clock: IReactorTime | None = None
    _acquiring = False
    _pending_start: _Pending | None = None
    _pending_stop: _Pending | None = None

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self._clock = clock

    # -- plumbing -------------------------------------------------------

    @property
    def clock(self) -> IReactorTime:
        """The clock that times this backend (the reactor unless injected)."""
        if self._clock is None:
            self._clock = global_reactor()  # looked up once, on first use
        return self._clock

    @property
    def acquiring(self) -> bool:
        """Whether the backend is acquiring now."""
        return self._acquiring

    @property
    def pending_start(self) -> float | None:
        """Unix seconds of the pending time-tagged start, if any."""
        return self._pending_start.at if self._pending_start else None

    @property
    def pending_stop(self) -> float | None:
        """Unix seconds of the pending time-tagged stop, if any."""
        return self._pending_stop.at if self._pending_stop else None

    def open(self) -> None:
        """Called when the server starts serving this backend."""

    def close(self) -> None:
        """Called when the server stops: cancels pending start/stop (and logs it)."""
        for what, pending in (("start", self._pending_start), ("stop", self._pending_stop)):
            if pending is not None:
                _log.warn("the server is stopping: the time-tagged {what} due at {at} is "
                          "cancelled", what=what, at=timediscos.format_reply_timestamp(pending.at))
        self._cancel_pending()

    # -- commands -------------------------------------------------------

    def status(self) -> tuple[Any, str, bool]:
        """``status``: (timestamp, status word, acquiring).

        The timestamp is unix seconds (float) or an astropy ``Time``; the
        status word is ``ok`` when healthy, else one short word.
        """
        return self.time(), "ok", self._acquiring

    def time(self) -> float | Time:
        """``time``: the backend's clock, unix seconds or an astropy ``Time``."""
        return self.clock.seconds()

    def get_configuration(self) -> str:
        """``get-configuration``: the configuration id (``unconfigured`` before one)."""
        raise NotSupportedError("not supported: get-configuration")

    def set_configuration(self, configuration: str) -> None:
        """``set-configuration``: load the configuration named ``configuration``."""
        raise NotSupportedError("not supported: set-configuration")

    def get_integration(self) -> int:
        """``get-integration``: integration time in milliseconds (0 before set)."""
        raise NotSupportedError("not supported: get-integration")

    def set_integration(self, integration: int) -> None:
        """``set-integration``: integration time in milliseconds, >= 0."""
        raise NotSupportedError("not supported: set-integration")

    def get_tpi(self, frequency: float | None = None,
                bandwidth: float | None = None) -> Sequence[float]:
        """``get-tpi``: total power, one value per section.

        ``frequency`` and ``bandwidth`` (MHz) are ``None`` for the default.
        """
        raise NotSupportedError("not supported: get-tpi")

    def get_tp0(self, frequency: float | None = None,
                bandwidth: float | None = None) -> Sequence[float]:
        """``get-tp0``: zero-level total power, one value per section."""
        raise NotSupportedError("not supported: get-tp0")

    def get_rms(self) -> Sequence[float]:
        """``get-rms``: rms, one value per section."""
        raise NotSupportedError("not supported: get-rms")

    def set_section(self, section: int | str, start_freq: float | str,
                    bandwidth: float | str, feed: int | str, mode: str,
                    sample_rate: float | str, bins: int | str) -> None:
        """``set-section``: configure ``section`` (-1: all sections).

        Frequencies and bandwidth in MHz, sample rate in MHz, ``mode`` as sent
        (``0``/``1``/``2`` from DISCOS, or a word such as ``FullStokes``).
        Each argument may be :data:`UNCHANGED` (``"*"``): keep that setting.
        """
        raise NotSupportedError("not supported: set-section")

    def cal_on(self, interleave: int) -> None:
        """``cal-on``: calibration mark every ``interleave`` samples (0: off)."""
        raise NotSupportedError("not supported: cal-on")

    def set_filename(self, filename: str) -> None:
        """``set-filename``: path of the metadata file to merge."""
        raise NotSupportedError("not supported: set-filename")

    def convert_data(self) -> None:
        """``convert-data``: convert the acquired data."""
        raise NotSupportedError("not supported: convert-data")

    def set_enable(self, feed1: int, feed2: int) -> None:
        """``set-enable``: enable the two given feeds."""
        raise NotSupportedError("not supported: set-enable")

    def end_schedule(self) -> None:
        """``end-schedule``: the running schedule is over."""
        raise NotSupportedError("not supported: end-schedule")

    def park(self) -> None:
        """``backend-park``: park the backend."""
        raise NotSupportedError("not supported: backend-park")

    def set_shift(self, shift: int) -> None:
        """``set-shift``: set the shift."""
        raise NotSupportedError("not supported: set-shift")

    # -- acquisition ----------------------------------------------------

    def start_acquisition(self) -> None:
        """Hardware hook: begin acquiring now.  Raise to refuse."""

    def stop_acquisition(self) -> None:
        """Hardware hook: stop acquiring now.  Raise to refuse."""

    def start(self, timestamp: Time | None = None) -> None:
        """``start``: acquire now, or at ``timestamp``.

        A new time-tagged start replaces a pending one (and drops a pending
        stop that would come before it).  Fails if already acquiring (with no
        stop pending before the new start) or if the time is already past.
        """
        if timestamp is None:
            if self._acquiring:
                raise BackendError("already acquiring")
            self._begin()
            if self._pending_start is not None:
                self._pending_start.cancel()
                self._pending_start = None
            return
        at, delay = self._schedule_time(timestamp)
        if self._acquiring and (self._pending_stop is None or self._pending_stop.at >= at):
            raise BackendError("already acquiring")
        if self._pending_start is not None:
            self._pending_start.cancel()
        if (not self._acquiring and self._pending_stop is not None
                and self._pending_stop.at <= at):
            # The pending stop belonged to the start being replaced.
            self._pending_stop.cancel()
            self._pending_stop = None
        self._pending_start = _Pending(at, self.clock.callLater(delay, self._fire_start))

    def stop(self, timestamp: Time | None = None) -> None:
        """``stop``: stop now, or at ``timestamp``.

        Stopping now cancels a pending start (and stop).  A time-tagged stop
        replaces a pending one and must come after a pending start.  Fails if
        idle with nothing pending, or if the time is already past.
        """
        if timestamp is None:
            if not self._acquiring and self._pending_start is None:
                raise BackendError("not acquiring")
            if self._acquiring:
                self._end()
            self._cancel_pending()
            return
        at, delay = self._schedule_time(timestamp)
        if not self._acquiring and self._pending_start is None:
            raise BackendError("not acquiring")
        if self._pending_start is not None and at <= self._pending_start.at:
            raise BackendError("stop time must follow the pending start")
        if self._pending_stop is not None:
            self._pending_stop.cancel()
        self._pending_stop = _Pending(at, self.clock.callLater(delay, self._fire_stop))

    def _schedule_time(self, timestamp: Time) -> tuple[float, float]:
        if isinstance(timestamp, Time):
            at = timediscos.time_to_acs(timestamp) / timediscos.TICKS_PER_SECOND
        else:
            at = float(timestamp)
        delay = at - self.clock.seconds()
        if delay <= 0:
            raise BackendError(
                f"past timestamp: {timediscos.format_reply_timestamp(timestamp)} is "
                f"{-delay:.3f} s ago")
        return at, delay

    def _begin(self) -> None:
        self.start_acquisition()
        self._acquiring = True

    def _end(self) -> None:
        self.stop_acquisition()
        self._acquiring = False

    def _cancel_pending(self) -> None:
        for pending in (self._pending_start, self._pending_stop):
            if pending is not None:
                pending.cancel()
        self._pending_start = self._pending_stop = None

    def _fire_start(self) -> None:
        self._pending_start = None
        if self._acquiring:
            _log.warn("time-tagged start found the backend already acquiring")
            return
        try:
            self._begin()
        except Exception:  # pylint: disable=broad-except
            _log.failure("time-tagged start failed")

    def _fire_stop(self) -> None:
        self._pending_stop = None
        if not self._acquiring:
            return
        try:
            self._end()
        except Exception:  # pylint: disable=broad-except
            _log.failure("time-tagged stop failed")
