"""Tests for discosbackend.worker: one thread, one call at a time, in order.

The worker delivers results through the real reactor (pytest-twisted's).
Calls that must block block on a :class:`Gated` event that the test opens,
never on a timer: the tests assert order, not wall-clock time.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import LogLevel

from discosbackend.worker import (Worker, WorkerStopped, current_worker, on_reactor,
                                  queued_for)

THREAD = "discos-backend test"


class Gated:
    """A call that blocks in the worker until :meth:`open`; ``started`` fires once it runs."""

    def __init__(self, result: Any = "opened") -> None:
        self.started: defer.Deferred = defer.Deferred()
        self.gate = threading.Event()
        self.result = result
        self.finished = False

    def __call__(self) -> Any:
        reactor.callFromThread(self.started.callback, threading.current_thread().name)
        if not self.gate.wait(10):
            raise RuntimeError("the test never opened the gate")
        self.finished = True
        return self.result

    def open(self) -> None:
        self.gate.set()


@pytest.fixture(name="worker")
def fixture_worker() -> Iterator[Worker]:
    worker = Worker("test", reactor)
    worker.start()
    yield worker
    worker.stop(5)


def here() -> str:
    return threading.current_thread().name


@pytest_twisted.inlineCallbacks
def test_calls_run_one_at_a_time_in_order_in_one_thread(worker):
    seen: list[tuple[int, str]] = []
    busy = []

    def job(number: int) -> int:
        busy.append(number)
        seen.append((number, here()))
        assert busy == [number], "two calls at once"
        busy.remove(number)
        return number * 2

    results = yield defer.gatherResults([worker.call(f"job({n})", job, n) for n in range(40)])
    assert results == [n * 2 for n in range(40)]
    assert [number for number, _ in seen] == list(range(40))
    assert {thread for _, thread in seen} == {THREAD}


@pytest_twisted.inlineCallbacks
def test_results_and_errors_come_back_on_the_reactor_thread(worker):
    where: list[str] = []
    result = yield worker.call("answer()", lambda: 42).addCallback(
        lambda value: where.append(here()) or value)
    assert result == 42

    def refuse() -> None:
        raise ValueError("no hardware")

    with pytest.raises(ValueError, match="no hardware"):
        yield worker.call("refuse()", refuse).addErrback(
            lambda failure: where.append(here()) or failure)

    def leave() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        yield worker.call("leave()", leave)
    assert where == [threading.main_thread().name] * 2


@pytest_twisted.inlineCallbacks
def test_an_awaitable_result_is_awaited_on_the_reactor(worker):
    where: list[str] = []

    async def later() -> int:
        where.append(here())
        return 7

    assert (yield worker.call("later()", later)) == 7  # the coroutine is made in the worker
    assert where == [threading.main_thread().name]
    assert (yield worker.call("ready()", defer.succeed, "done")) == "done"


@pytest_twisted.inlineCallbacks
def test_the_worker_is_known_in_its_thread_only(worker):
    assert current_worker() is None
    assert (yield worker.call("who()", current_worker)) is worker


@pytest_twisted.inlineCallbacks
def test_on_reactor_is_immediate_on_the_reactor_and_queued_from_the_worker(worker):
    ran: list[str] = []
    on_reactor(lambda: ran.append(here()))
    assert ran == [threading.main_thread().name]
    arrived: defer.Deferred = defer.Deferred()
    yield worker.call("later()", on_reactor, lambda: arrived.callback(here()))
    assert (yield arrived) == threading.main_thread().name


@pytest_twisted.inlineCallbacks
def test_what_a_call_posts_is_done_before_its_result_is_delivered(worker):
    done: list[str] = []

    def arm(number: int) -> int:
        on_reactor(done.append, f"armed {number}")
        return number

    calls = [worker.call(f"arm({n})", arm, n) for n in range(20)]
    for number, call in enumerate(calls):
        call.addCallback(lambda result: done.append(f"result {result}"))
    yield defer.gatherResults(calls)
    assert done == [text for n in range(20) for text in (f"armed {n}", f"result {n}")]


@pytest_twisted.inlineCallbacks
def test_a_failing_post_is_logged_and_the_rest_is_done(worker, logged):
    done: list[str] = []

    def posts() -> str:
        worker.post(lambda: 1 / 0)
        worker.post(done.append, "after")
        return "returned"

    assert (yield worker.call("posts()", posts)) == "returned"
    assert done == ["after"]
    assert [text.split(":")[0] for text in logged.texts(LogLevel.critical)] == [
        "posted by the worker"]


@pytest_twisted.inlineCallbacks
def test_running_and_waiting_say_what_the_worker_does(worker):
    gated = Gated()
    first = worker.call("gated()", gated)
    second = worker.call("next()", lambda: "next")
    assert (yield gated.started) == THREAD
    assert worker.running == "gated()"
    assert worker.waiting == ["next()"]
    gated.open()
    assert (yield first) == "opened"
    assert (yield second) == "next"
    assert worker.running is None and worker.waiting == []


@pytest_twisted.inlineCallbacks
def test_queued_for_says_how_long_the_running_call_waited_for_the_worker(worker):
    gated = Gated()
    worker.call("slow()", gated)
    yield gated.started
    behind = worker.call("behind()", queued_for)
    time.sleep(0.05)  # the reactor holds on: behind() waits at least this long
    gated.open()
    assert (yield behind) >= 0.05
    assert (yield worker.call("idle()", queued_for)) < 0.05
    assert queued_for() == 0.0 and worker.queued == 0.0  # on the reactor; nothing runs


@pytest_twisted.inlineCallbacks
def test_a_call_cancelled_before_it_starts_is_dropped(worker, logged):
    gated = Gated()
    first = worker.call("gated()", gated)
    ran: list[str] = []
    dropped = worker.call("set_integration()", ran.append, "set")
    yield gated.started
    dropped.cancel()
    with pytest.raises(defer.CancelledError):
        yield dropped
    gated.open()
    yield first
    assert (yield worker.call("after()", lambda: "after")) == "after"
    assert ran == []  # never ran, not even late
    assert logged.texts(LogLevel.warn) == [
        "backend call set_integration() dropped: its request timed out while it waited "
        "for gated()"]


@pytest_twisted.inlineCallbacks
def test_a_running_call_cancelled_finishes_in_the_background_and_the_next_waits(worker, logged):
    gated = Gated()
    slow = worker.call("slow()", gated)
    yield gated.started
    slow.cancel()
    with pytest.raises(defer.CancelledError):
        yield slow
    after = worker.call("after()", lambda: gated.finished)
    warnings = logged.texts(LogLevel.warn)
    assert len(warnings) == 1
    assert warnings[0].startswith("backend call slow() still running after ")
    assert re.search(r" s, having waited [0-9.]+ s for the worker: its request was answered "
                     r"fail \(timeout\); 0 call\(s\) wait behind it$", warnings[0])
    gated.open()
    assert (yield after) is True  # it ran once slow() had finished
    warnings = logged.texts(LogLevel.warn)
    assert len(warnings) == 2
    assert warnings[1].startswith("backend call slow() overran: it finished after ")
    assert warnings[1].endswith("s, after its request had timed out; its result was dropped")


@pytest_twisted.inlineCallbacks
def test_stop_drops_what_waits_runs_the_last_call_after_the_running_one(logged):
    worker = Worker("test", reactor)
    worker.start()
    gated = Gated()
    running = worker.call("gated()", gated)
    ran: list[str] = []
    worker.call("dropped()", ran.append, "dropped")
    yield gated.started
    reactor.callInThread(gated.open)  # while stop() below waits on the reactor thread
    assert worker.stop(10, lambda: ran.append("last" if gated.finished else "too early"))
    assert ran == ["last"]
    assert (yield running) == "opened"
    with pytest.raises(WorkerStopped):
        yield worker.call("late()", lambda: None)
    assert worker.stop(10)  # again: nothing to do
    assert logged.texts(LogLevel.warn) == []


@pytest_twisted.inlineCallbacks
def test_stop_waits_a_bounded_time_for_a_stuck_call(logged):
    worker = Worker("test", reactor)
    worker.start()
    stuck = Gated()
    worker.call("stuck()", stuck)
    yield stuck.started
    closed: list[bool] = []
    try:
        assert not worker.stop(0.05, lambda: closed.append(True))
    finally:
        stuck.open()
    assert logged.texts(LogLevel.warn) == [
        "shutting down without waiting for stuck(): still running after 0.05 s; close() "
        "not called yet"]
    assert worker._thread is not None and worker._thread.daemon  # it can't hold the exit


def test_stop_before_start_runs_the_last_call_here():
    worker = Worker("test", reactor)
    ran: list[str] = []
    worker.call("never()", ran.append, "never")
    assert worker.stop(1, lambda: ran.append(here()))
    assert ran == [threading.main_thread().name]


def test_stop_logs_a_failing_last_call(logged):
    worker = Worker("test", reactor)
    worker.start()

    def close() -> None:
        raise OSError("port stuck")

    assert worker.stop(5, close)
    assert logged.texts(LogLevel.critical) == ["close() failed"]


def test_call_and_wait(worker):
    assert worker.call_and_wait("open()", here) == THREAD

    def refuse() -> None:
        raise ConnectionRefusedError("no spectrometer")

    with pytest.raises(ConnectionRefusedError, match="no spectrometer"):
        worker.call_and_wait("open()", refuse)
    stuck = Gated()
    try:
        with pytest.raises(TimeoutError, match=r"open\(\) still running after 0.01 s"):
            worker.call_and_wait("open()", stuck, 0.01)
    finally:
        stuck.open()
