"""The Backend contract: one method per protocol command.

Subclass :class:`Backend` and override the methods your hardware supports;
the ones you leave alone answer ``fail`` (``not supported``).  Serve it with
``server.run_server(8978, DBProtocolHandler(MyBackend()))``.

Every method may return its value, a Deferred firing with it, or be
``async def``.  Raise :class:`~discosbackend.errors.BackendError` (or any
:class:`~discosbackend.errors.HandlerException`) to refuse a request with a
reason: the client gets ``!name,fail,<reason>``.

Methods that block (hardware I/O, ``time.sleep``) run in the server's
worker thread when the handler is threaded
(``DBProtocolHandler(backend, threaded=True)``) or when marked with
:func:`blocking`; :func:`runs_in_worker` is the one rule deciding it.

Start and stop, immediate or time-tagged, are implemented here on an
injectable clock: override :meth:`Backend.start_acquisition` and
:meth:`Backend.stop_acquisition` to drive the hardware, and every backend
gets the protocol's scheduling rules right.  Their timers always run on the
reactor; when ``start``/``stop`` run in the worker, so do the hooks a timer
calls, queued behind the calls already waiting.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence, TypeVar, overload

from astropy.time import Time
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from discosbackend import timediscos
from discosbackend.commands import UNCHANGED
from discosbackend.errors import BackendError, NotSupportedError
from discosbackend.reactor import global_reactor
from discosbackend.watchdog import DEFAULT_THRESHOLD
from discosbackend.worker import WorkerStopped, current_worker, on_reactor, queued_for

__all__ = ["Backend", "UNCHANGED", "BackendError", "blocking", "runs_in_worker"]

_log = Logger()
F = TypeVar("F", bound=Callable[..., Any])

# The attribute @blocking sets on a method: True (worker) or False (reactor).
_BLOCKING = "discos_blocking"
# Backend.start/stop carry this instead: they run where the acquisition hooks run.
_LIKE_HOOKS = "like the acquisition hooks"
_HOOKS = ("start_acquisition", "stop_acquisition")


@overload
def blocking(target: F) -> F:
    ...


@overload
def blocking(target: bool) -> Callable[[F], F]:
    ...


def blocking(target: F | bool) -> F | Callable[[F], F]:
    """Mark a backend method as blocking: the server calls it in its worker thread.

    ``@blocking`` on a method that talks to hardware or sleeps keeps it off
    the reactor even when the handler is not threaded.  ``@blocking(False)``
    keeps a method on the reactor even when the handler is threaded: for a
    method that returns a Deferred (``async def`` methods always stay there).
    """
    if isinstance(target, bool):
        value = target
        return lambda method: _mark(method, value)
    return _mark(target, True)


def _mark(method: F, value: bool) -> F:
    if inspect.iscoroutinefunction(method):
        raise TypeError(f"{method.__qualname__} is async def: it runs on the reactor and "
                        "never blocks it; do not mark it")
    setattr(method, _BLOCKING, value)
    return method


def runs_in_worker(method: Callable[..., Any], default: bool) -> bool:
    """Whether the server calls the backend's bound ``method`` in its worker thread.

    ``default`` is the handler's mode (``threaded``).  ``async def`` methods
    never do; methods marked with :func:`blocking` do as marked; the
    :class:`Backend`'s own ``start``/``stop`` do when the handler is threaded
    or an acquisition hook is marked ``@blocking``.
    """
    if inspect.iscoroutinefunction(method):
        return False
    mark = getattr(method, _BLOCKING, None)
    if mark == _LIKE_HOOKS:
        owner = getattr(method, "__self__", None)
        return default or any(getattr(getattr(owner, hook, None), _BLOCKING, None) is True
                              for hook in _HOOKS)
    return default if mark is None else bool(mark)


def _like_hooks(method: F) -> F:
    setattr(method, _BLOCKING, _LIKE_HOOKS)
    return method


class _Pending:
    """A time-tagged start or stop: when it fires, and its timer (once armed)."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.call: IDelayedCall | None = None

    def cancel(self) -> None:
        on_reactor(self._cancel_timer)

    def _cancel_timer(self) -> None:
        if self.call is not None and self.call.active():
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

    # These two are the library's, quick and thread-safe: answered on the
    # reactor at once even when the worker is busy.  An override is yours:
    # it runs where your other methods run.
    @blocking(False)
    def status(self) -> tuple[Any, str, bool]:
        """``status``: (timestamp, status word, acquiring).

        The timestamp is unix seconds (float) or an astropy ``Time``; the
        status word is ``ok`` when healthy, else one short word.
        """
        return self.time(), "ok", self._acquiring

    @blocking(False)
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
    #
    # Threads: every method here may run in the worker thread (see
    # runs_in_worker).  The scheduling state is then only touched there, one
    # call at a time; the timers live on the reactor (reached through
    # on_reactor), and a timer that fires queues its hook to the worker.

    def start_acquisition(self) -> None:
        """Hardware hook: begin acquiring now.  Raise to refuse."""

    def stop_acquisition(self) -> None:
        """Hardware hook: stop acquiring now.  Raise to refuse."""

    @_like_hooks
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
        at = self._schedule_time(timestamp)
        if self._acquiring and (self._pending_stop is None or self._pending_stop.at >= at):
            raise BackendError("already acquiring")
        if self._pending_start is not None:
            self._pending_start.cancel()
        if (not self._acquiring and self._pending_stop is not None
                and self._pending_stop.at <= at):
            # The pending stop belonged to the start being replaced.
            self._pending_stop.cancel()
            self._pending_stop = None
        self._pending_start = self._schedule(at, "start", self._fire_start)

    @_like_hooks
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
        at = self._schedule_time(timestamp)
        if not self._acquiring and self._pending_start is None:
            raise BackendError("not acquiring")
        if self._pending_start is not None and at <= self._pending_start.at:
            raise BackendError("stop time must follow the pending start")
        if self._pending_stop is not None:
            self._pending_stop.cancel()
        self._pending_stop = self._schedule(at, "stop", self._fire_stop)

    def _schedule_time(self, timestamp: Time) -> float:
        """Unix seconds of ``timestamp``; refuses a time already past when the request came.

        A request that waited for a busy worker is judged by when it
        arrived: a time still ahead then is accepted, and its timer fires at
        once (the hook then runs late, and says so).
        """
        if isinstance(timestamp, Time):
            at = timediscos.time_to_acs(timestamp) / timediscos.TICKS_PER_SECOND
        else:
            at = float(timestamp)
        delay = at - (self.clock.seconds() - queued_for())
        if delay <= 0:
            raise BackendError(
                f"past timestamp: {timediscos.format_reply_timestamp(timestamp)} is "
                f"{-delay:.3f} s ago")
        return at

    def _schedule(self, at: float, what: str,
                  action: Callable[[_Pending], None]) -> _Pending:
        """A timer calling ``action(pending)`` at ``at``, where this call runs."""
        pending = _Pending(at)
        worker = current_worker()

        def fire() -> None:  # on the reactor, on time
            if worker is None:
                action(pending)
            else:  # behind the calls already waiting: backend code never runs twice at once
                worker.call(f"time-tagged {what}", action, pending).addErrback(
                    _not_done, what)

        def arm() -> None:  # on the reactor
            pending.call = self.clock.callLater(max(0.0, at - self.clock.seconds()), fire)

        on_reactor(arm)
        return pending

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

    def _late(self, what: str, pending: _Pending) -> None:
        """Warn when a time-tagged ``what`` runs well after its time."""
        late = self.clock.seconds() - pending.at
        if late > DEFAULT_THRESHOLD:
            _log.warn("time-tagged {what} ran {late:.3f} s after its time: the backend was "
                      "busy", what=what, late=late)

    def _fire_start(self, pending: _Pending) -> None:
        if self._pending_start is not pending:
            return  # cancelled or replaced while its hook waited for the worker
        self._pending_start = None
        self._late("start", pending)
        if self._acquiring:
            _log.warn("time-tagged start found the backend already acquiring")
            return
        try:
            self._begin()
        except Exception:  # pylint: disable=broad-except
            _log.failure("time-tagged start failed")

    def _fire_stop(self, pending: _Pending) -> None:
        if self._pending_stop is not pending:
            return
        self._pending_stop = None
        self._late("stop", pending)
        if not self._acquiring:
            return
        try:
            self._end()
        except Exception:  # pylint: disable=broad-except
            _log.failure("time-tagged stop failed")


def _not_done(failure: Failure, what: str) -> None:
    """A time-tagged hook could not be queued or failed out of its handler."""
    if failure.check(WorkerStopped):
        _log.info("time-tagged {what} not done: the server is stopping", what=what)
    else:
        _log.failure("time-tagged {what} failed", failure, what=what)
