"""The worker thread: backend code that blocks, run off the reactor.

A :class:`Worker` runs calls in one thread, one at a time and in the order
they were given, so backend code need not be thread-safe and sees requests
in the order the client sent them.  Each call's result comes back on the
reactor, as a Deferred.  Results and what calls ask the reactor to do
(:func:`on_reactor`) reach it in order through one outbox, taken with one
``reactor.callFromThread`` for all that is posted before the reactor
comes to it.  The thread
is a plain daemon thread fed by a ``queue.SimpleQueue``, not a Twisted
``ThreadPool``: its stop can be bounded, a call stuck in the hardware does
not keep the process alive once the server has stopped waiting for it, and
it is quicker (``scripts/bench_handoff.py``: a call's round trip, Deferred
included, 20 µs at the median against 25 µs through a one-thread pool).

Cancelling that Deferred (the server's per-request timeout does) drops a
call that has not started yet.  A call that has started cannot be stopped:
it finishes in the background, the calls given after it wait for it, and
the log says it overran.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from functools import partial
from queue import SimpleQueue
from typing import Any, Callable

from twisted.internet.defer import Deferred, ensureDeferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from discosbackend.reactor import or_global

__all__ = ["Worker", "WorkerStopped", "current_worker", "on_reactor", "queued_for",
           "DEFAULT_SHUTDOWN_WAIT"]

#: How long, in seconds, shutting down waits for a running call by default.
DEFAULT_SHUTDOWN_WAIT = 5.0

_log = Logger()
_local = threading.local()


def current_worker() -> Worker | None:
    """The worker whose thread runs the caller; ``None`` on any other thread."""
    return getattr(_local, "worker", None)


def queued_for() -> float:
    """Seconds the call running in this thread waited for the worker; 0 on any other thread.

    A request that waited is judged by when it arrived (``Backend.start``: a
    time in the future then is not refused as past because a slow call
    held it up).
    """
    worker = current_worker()
    return worker.queued if worker is not None else 0.0


def on_reactor(function: Callable[..., object], *args: Any) -> None:
    """Call ``function(*args)``: now, or on the reactor if called in a worker's thread.

    Twisted's timers (``callLater``, ``cancel``) may be used on the reactor
    thread only: backend code that may run in a worker reaches them through
    this.  From a worker it is done before the running call's result is
    delivered (see :meth:`Worker.post`).
    """
    worker = current_worker()
    if worker is None:
        function(*args)
    else:
        worker.post(function, *args)


class WorkerStopped(RuntimeError):
    """A call was given to a worker that has stopped."""


class _Call:
    """One call: its name for the log, its function, the Deferred of its result."""

    __slots__ = ("what", "function", "deferred", "given", "started", "cancelled")

    def __init__(self, what: str, function: Callable[[], Any],
                 deferred: Deferred[Any] | None) -> None:
        self.what = what
        self.function = function
        self.deferred = deferred
        self.given = time.monotonic()
        self.started: float | None = None
        self.cancelled = False


class Worker:
    """One thread that runs calls one at a time, in the order given.

    ``start()`` it before the first call and ``stop()`` it when done.
    ``reactor`` (the global one by default) is where results are delivered.
    """

    def __init__(self, name: str = "backend", reactor: Any = None) -> None:
        self.name = name
        self._reactor = reactor
        self._calls: SimpleQueue[_Call | None] = SimpleQueue()  # None: the thread ends
        self._thread: threading.Thread | None = None
        # Guards a call's cancelled/started pair: a call is either dropped
        # before it starts or runs to its end, never both.
        self._lock = threading.Lock()
        self._waiting: deque[_Call] = deque()  # given, not started (in order)
        self._running: _Call | None = None
        # What waits for the reactor, in order, and whether the reactor has
        # been told to take it: one wake-up of the reactor for a burst.
        self._outbox: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._delivery_due = False
        self._stopped = False

    @property
    def reactor(self) -> Any:
        """The reactor the results are delivered on."""
        if self._reactor is None:
            self._reactor = or_global(None)
        return self._reactor

    @property
    def running(self) -> str | None:
        """What the worker is running now (``"get_tpi()"``), if anything."""
        call = self._running
        return call.what if call is not None else None

    @property
    def queued(self) -> float:
        """Seconds the running call waited for the worker before it began (0 when idle)."""
        call = self._running
        if call is None or call.started is None:
            return 0.0
        return call.started - call.given

    @property
    def waiting(self) -> list[str]:
        """What waits for the worker, in order (cancelled calls included)."""
        return [call.what for call in list(self._waiting)]

    def start(self) -> None:
        """Start the thread (calls given before wait for it)."""
        if self._thread is None:
            self._reactor = or_global(self._reactor)  # found here, on the reactor thread
            self._thread = threading.Thread(target=self._serve, daemon=True,
                                            name=f"discos-backend {self.name}")
            self._thread.start()

    def call(self, what: str, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``function(*args)`` in the thread after the calls given before it.

        The Deferred fires on the reactor with its result (if that is a
        Deferred or a coroutine, with what that gives) or its error.
        ``what`` names the call in the log, e.g. ``"get_tpi()"``.
        """
        if self._stopped:
            return fail(WorkerStopped(f"{what}: the server is stopping"))
        call = _Call(what, partial(function, *args), None)
        call.deferred = Deferred(lambda _: self._cancel(call))
        self._give(call)
        return call.deferred

    def call_and_wait(self, what: str, function: Callable[[], Any],
                      wait: float | None = None) -> Any:
        """Run ``function()`` in the thread after the calls before it, and wait for it.

        Blocks the calling thread: for ``open()`` and ``close()``, when
        nothing else is served.  Returns its result or raises its error;
        raises ``TimeoutError`` after ``wait`` seconds (``None``: no limit).
        """
        outcome: list[tuple[bool, Any]] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append((True, function()))
            except BaseException:  # pylint: disable=broad-except  # raised in the caller
                outcome.append((False, Failure()))
            finally:
                done.set()

        self._give(_Call(what, run, None))
        if not done.wait(wait):
            raise TimeoutError(f"{self.running or what} still running after {wait:g} s")
        succeeded, result = outcome[0]
        if not succeeded:
            result.raiseException()
        return result

    def stop(self, wait: float | None, last: Callable[[], object] | None = None,
             what: str = "close()") -> bool:
        """Stop taking calls, drop those not started, run ``last`` and stop the thread.

        Waits up to ``wait`` seconds for the running call and ``last`` (the
        backend's ``close()``) to finish; returns whether they did.  If not,
        the thread is left to finish on its own: it does not keep the
        process alive.
        """
        if self._stopped:
            return True
        self._stopped = True
        with self._lock:
            # Their connections are closed already: nobody waits for their
            # Deferreds, which never fire.
            for call in self._waiting:
                call.cancelled = True
        if self._thread is None:  # never started: nothing ran in a thread of ours
            if last is not None:
                last()
            return True
        try:
            self.call_and_wait(what, last or _nothing, wait)
        except TimeoutError:
            _log.warn("shutting down without waiting for {running}: still running after "
                      "{wait:g} s{skipped}", running=self.running or what, wait=wait,
                      skipped="" if last is None or self.running == what
                      else f"; {what} not called yet")
            return False
        except Exception:  # pylint: disable=broad-except
            _log.failure("{what} failed", what=what)
        finally:
            self._calls.put(None)  # the thread ends after the calls before
        return True

    def _give(self, call: _Call) -> None:
        self._waiting.append(call)
        self._calls.put(call)

    def _serve(self) -> None:
        """The worker thread: run the calls as they come, until told to end."""
        _local.worker = self
        while (call := self._calls.get()) is not None:
            self._run(call)

    def _run(self, call: _Call) -> None:
        """Run ``call``, in the worker thread."""
        with self._lock:
            self._waiting.popleft()  # it is ``call``: the queue keeps the order
            if call.cancelled:
                return
            call.started = time.monotonic()
            self._running = call
        try:
            result, succeeded = call.function(), True
        except BaseException:  # pylint: disable=broad-except  # even SystemExit gets its reply
            result, succeeded = Failure(), False
        finally:
            self._running = None
        elapsed = time.monotonic() - call.started
        # After what the call posted itself (a timer to arm, say): a client
        # that has its reply finds done what the call did.
        self.post(self._finished, call, succeeded, result, elapsed)

    def post(self, function: Callable[..., object], *args: Any) -> None:
        """Have the reactor call ``function(*args)``, after what was posted before.

        From any thread.  What a call posts, its result included, reaches
        the reactor in the order posted.
        """
        with self._lock:
            self._outbox.append((function, args))
            due, self._delivery_due = self._delivery_due, True
        if not due:
            self.reactor.callFromThread(self._deliver)

    def _deliver(self) -> None:
        """Do what was posted, in order: on the reactor."""
        with self._lock:
            posted = list(self._outbox)
            self._outbox.clear()
            self._delivery_due = False
        for function, args in posted:
            try:
                function(*args)
            except Exception:  # pylint: disable=broad-except  # the rest must still be done
                _log.failure("posted by the worker: {function!r} failed", function=function)

    def _finished(self, call: _Call, succeeded: bool, result: Any, elapsed: float) -> None:
        """``call`` has returned ``result`` after ``elapsed`` seconds: on the reactor."""
        if call.cancelled:
            _log.warn("backend call {what} overran: it finished after {elapsed:.3f} s, after "
                      "its request had timed out; its {outcome} was dropped", what=call.what,
                      elapsed=elapsed, outcome="result" if succeeded else "error")
            return
        deferred = call.deferred
        if deferred is None:
            return
        if not succeeded:
            deferred.errback(result)
        elif hasattr(result, "__await__"):
            ensureDeferred(result).chainDeferred(deferred)
        else:
            deferred.callback(result)

    def _cancel(self, call: _Call) -> None:
        """``call``'s Deferred was cancelled (its request timed out): on the reactor."""
        with self._lock:
            call.cancelled = True
            started = call.started
        if started is None:
            _log.warn("backend call {what} dropped: its request timed out while it waited for "
                      "{running}", what=call.what, running=self.running or "the worker")
        else:
            _log.warn("backend call {what} still running after {elapsed:.3f} s, having waited "
                      "{queued:.3f} s for the worker: its request was answered fail (timeout); "
                      "{waiting} call(s) wait behind it", what=call.what,
                      elapsed=time.monotonic() - started, queued=started - call.given,
                      waiting=len(self._waiting))


def _nothing() -> None:
    """What ``stop`` runs last when given nothing."""
