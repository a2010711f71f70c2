"""Tests for discosbackend.backend: the Backend base and its start/stop rules."""

import pytest
from astropy.time import Time
from twisted.internet import task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from discosbackend.backend import UNCHANGED, Backend, _not_done, blocking, runs_in_worker
from discosbackend.commands import COMMANDS
from discosbackend.errors import BackendError, HandlerException, NotSupportedError
from discosbackend.timediscos import TICKS_PER_SECOND, acs_to_time
from discosbackend.worker import WorkerStopped

NOW = 1_700_000_000


def at(seconds_from_now, ticks=0):
    """The exact instant ``seconds_from_now`` (+ ``ticks`` of 100 ns) after NOW."""
    return acs_to_time((NOW + seconds_from_now) * TICKS_PER_SECOND + ticks)


class HookBackend(Backend):
    """Records when its acquisition hooks run; can be told to refuse."""

    def __init__(self, clock):
        super().__init__(clock)
        self.events = []
        self.refuse_start = False
        self.refuse_stop = False

    def start_acquisition(self):
        if self.refuse_start:
            raise RuntimeError("hardware says no")
        self.events.append(("start", self.clock.seconds()))

    def stop_acquisition(self):
        if self.refuse_stop:
            raise RuntimeError("hardware stuck")
        self.events.append(("stop", self.clock.seconds()))


@pytest.fixture(name="clock")
def fixture_clock():
    clock = task.Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture(name="backend")
def fixture_backend(clock):
    return HookBackend(clock)


@pytest.fixture(name="log_events")
def fixture_log_events():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def refusal(action):
    """The message of the BackendError that ``action()`` raises."""
    with pytest.raises(BackendError) as caught:
        action()
    assert isinstance(caught.value, HandlerException)
    return str(caught.value)


# -- immediate start/stop --------------------------------------------------------------

def test_initial_state(backend, clock):
    assert not backend.acquiring
    assert backend.pending_start is None
    assert backend.pending_stop is None
    assert backend.clock is clock
    assert backend.UNCHANGED == UNCHANGED == "*"


def test_start_now_and_stop_now(backend, clock):
    backend.start()
    assert backend.acquiring
    assert backend.events == [("start", NOW)]
    clock.advance(3)
    backend.stop()
    assert not backend.acquiring
    assert backend.events == [("start", NOW), ("stop", NOW + 3)]


def test_start_while_acquiring(backend):
    backend.start()
    assert refusal(backend.start) == "already acquiring"
    assert backend.acquiring
    assert backend.events == [("start", NOW)]


def test_stop_while_idle(backend):
    assert refusal(backend.stop) == "not acquiring"
    assert refusal(lambda: backend.stop(at(10))) == "not acquiring"
    assert backend.events == []
    assert backend.pending_stop is None


def test_immediate_start_hook_error_propagates(backend):
    backend.refuse_start = True
    with pytest.raises(RuntimeError, match="hardware says no"):
        backend.start()
    assert not backend.acquiring


def test_immediate_stop_hook_error_propagates(backend):
    backend.start()
    backend.refuse_stop = True
    with pytest.raises(RuntimeError, match="hardware stuck"):
        backend.stop()
    assert backend.acquiring


# -- time-tagged start -------------------------------------------------------------------

def test_timed_start_fires_at_its_time(backend, clock):
    backend.start(at(10))
    assert backend.pending_start == NOW + 10
    assert not backend.acquiring
    clock.advance(9.999)
    assert not backend.acquiring
    assert backend.events == []
    clock.advance(0.001)
    assert backend.acquiring
    assert backend.events == [("start", pytest.approx(NOW + 10))]
    assert backend.pending_start is None


def test_timed_start_a_millisecond_ahead(backend, clock):
    backend.start(at(0, ticks=10_000))
    assert backend.pending_start == pytest.approx(NOW + 0.001)
    clock.advance(0.0009)
    assert not backend.acquiring
    clock.advance(0.0001)
    assert backend.acquiring


def test_timed_start_with_unix_seconds_time(backend, clock):
    backend.start(Time(NOW + 5, format="unix"))
    clock.advance(4)
    assert not backend.acquiring
    clock.advance(1)
    assert backend.acquiring


def test_new_timed_start_replaces_pending_one(backend, clock):
    backend.start(at(10))
    backend.start(at(20))
    assert backend.pending_start == NOW + 20
    clock.advance(15)
    assert not backend.acquiring
    clock.advance(5)
    assert backend.acquiring
    clock.advance(100)
    assert backend.events == [("start", NOW + 20)]


def test_earlier_timed_start_replaces_later_one(backend, clock):
    backend.start(at(20))
    backend.start(at(10))
    clock.advance(10)
    assert backend.events == [("start", NOW + 10)]
    clock.advance(100)
    assert backend.events == [("start", NOW + 10)]


def test_stop_now_cancels_pending_start(backend, clock):
    backend.start(at(10))
    backend.stop()
    assert backend.pending_start is None
    assert not backend.acquiring
    clock.advance(100)
    assert not backend.acquiring
    assert backend.events == []
    assert clock.getDelayedCalls() == []


def test_start_now_cancels_pending_start(backend, clock):
    backend.start(at(10))
    backend.start()
    assert backend.acquiring
    assert backend.pending_start is None
    clock.advance(100)
    assert backend.events == [("start", NOW)]


def test_timed_start_while_acquiring(backend):
    backend.start()
    assert refusal(lambda: backend.start(at(10))) == "already acquiring"
    assert backend.pending_start is None


def test_timed_start_after_pending_stop_while_acquiring(backend, clock):
    backend.start()
    backend.stop(at(10))
    backend.start(at(20))
    clock.advance(10)
    assert not backend.acquiring
    clock.advance(10)
    assert backend.acquiring
    assert backend.events == [("start", NOW), ("stop", NOW + 10), ("start", NOW + 20)]


def test_timed_start_before_pending_stop_while_acquiring(backend):
    backend.start()
    backend.stop(at(20))
    assert refusal(lambda: backend.start(at(10))) == "already acquiring"


@pytest.mark.parametrize("when", [at(0), at(-1), at(0, ticks=-1), at(-3600)])
def test_timed_start_in_the_past(backend, when):
    assert refusal(lambda: backend.start(when)).startswith("past timestamp")
    assert backend.pending_start is None


def test_past_timestamp_message(backend):
    assert refusal(lambda: backend.start(at(-2, ticks=5_000_000))) == \
        "past timestamp: 1699999998.5000000 is 1.500 s ago"


# -- time-tagged stop ----------------------------------------------------------------------

def test_timed_stop_fires_at_its_time(backend, clock):
    backend.start()
    backend.stop(at(10))
    assert backend.pending_stop == NOW + 10
    clock.advance(9.5)
    assert backend.acquiring
    clock.advance(0.5)
    assert not backend.acquiring
    assert backend.pending_stop is None
    assert backend.events == [("start", NOW), ("stop", NOW + 10)]


def test_new_timed_stop_replaces_pending_one(backend, clock):
    backend.start()
    backend.stop(at(10))
    backend.stop(at(20))
    assert backend.pending_stop == NOW + 20
    clock.advance(15)
    assert backend.acquiring
    clock.advance(5)
    assert not backend.acquiring
    assert backend.events == [("start", NOW), ("stop", NOW + 20)]


def test_stop_now_cancels_pending_stop(backend, clock):
    backend.start()
    backend.stop(at(10))
    backend.stop()
    assert backend.pending_stop is None
    clock.advance(100)
    assert backend.events == [("start", NOW), ("stop", NOW)]


def test_pending_start_and_stop_fire_in_order(backend, clock):
    backend.start(at(10))
    backend.stop(at(20))
    assert (backend.pending_start, backend.pending_stop) == (NOW + 10, NOW + 20)
    clock.advance(10)
    assert backend.acquiring
    assert (backend.pending_start, backend.pending_stop) == (None, NOW + 20)
    clock.advance(10)
    assert not backend.acquiring
    assert (backend.pending_start, backend.pending_stop) == (None, None)
    assert backend.events == [("start", NOW + 10), ("stop", NOW + 20)]


@pytest.mark.parametrize("stop_at", [5, 10])
def test_stop_time_not_after_pending_start(backend, stop_at):
    backend.start(at(10))
    message = refusal(lambda: backend.stop(at(stop_at)))
    assert message == "stop time must follow the pending start"
    assert backend.pending_stop is None
    assert backend.pending_start == NOW + 10


@pytest.mark.parametrize("when", [at(0), at(-1), at(0, ticks=-1)])
def test_timed_stop_in_the_past(backend, when):
    backend.start()
    assert refusal(lambda: backend.stop(when)).startswith("past timestamp")
    assert backend.pending_stop is None
    assert backend.acquiring


# -- close, hooks failing on the clock ------------------------------------------------

def test_close_cancels_everything_pending(backend, clock):
    backend.start(at(10))
    backend.stop(at(20))
    backend.close()
    assert backend.pending_start is None
    assert backend.pending_stop is None
    assert clock.getDelayedCalls() == []
    clock.advance(100)
    assert backend.events == []
    assert not backend.acquiring


def test_close_leaves_acquisition_alone(backend):
    backend.start()
    backend.close()
    assert backend.acquiring


def test_open_does_nothing(backend):
    backend.open()
    assert not backend.acquiring


def test_timed_start_hook_error_is_logged(backend, clock, log_events):
    backend.refuse_start = True
    backend.start(at(10))
    clock.advance(10)
    assert not backend.acquiring
    assert backend.pending_start is None
    failures = [event for event in log_events if "log_failure" in event]
    assert len(failures) == 1
    assert failures[0]["log_format"] == "time-tagged start failed"
    assert failures[0]["log_failure"].check(RuntimeError)
    # the backend still works afterwards
    backend.refuse_start = False
    backend.start()
    assert backend.acquiring


def test_timed_stop_hook_error_is_logged(backend, clock, log_events):
    backend.start()
    backend.refuse_stop = True
    backend.stop(at(10))
    clock.advance(10)
    assert backend.acquiring
    assert backend.pending_stop is None
    failures = [event for event in log_events if "log_failure" in event]
    assert [event["log_format"] for event in failures] == ["time-tagged stop failed"]


# -- the other commands --------------------------------------------------------------

UNIMPLEMENTED = [c for c in COMMANDS.values()
                 if c.method not in (None, "status", "time", "start", "stop")]


@pytest.mark.parametrize("declared", UNIMPLEMENTED, ids=[c.name for c in UNIMPLEMENTED])
def test_unimplemented_commands_are_not_supported(backend, declared):
    method = getattr(backend, declared.method)
    with pytest.raises(NotSupportedError) as caught:
        method(*[UNCHANGED] * len(declared.arguments))
    assert str(caught.value) == f"not supported: {declared.name}"


def test_status_default(backend, clock):
    assert backend.status() == (NOW, "ok", False)
    assert backend.status()[0] == clock.seconds()
    backend.start()
    clock.advance(2.5)
    assert backend.status() == (NOW + 2.5, "ok", True)


def test_time_uses_the_clock(backend, clock):
    assert backend.time() == NOW
    clock.advance(0.25)
    assert backend.time() == NOW + 0.25


class NoInit(Backend):
    """A subclass that never calls Backend.__init__."""

    def __init__(self):  # pylint: disable=super-init-not-called
        self.configuration = "SK00"

    def get_configuration(self):
        return self.configuration


def test_subclass_without_init_uses_the_reactor():
    from twisted.internet import reactor
    backend = NoInit()
    assert backend.clock is reactor
    assert not backend.acquiring
    assert backend.pending_start is None
    assert backend.pending_stop is None
    assert backend.get_configuration() == "SK00"
    assert backend.status()[1:] == ("ok", False)
    backend.close()


def test_subclass_without_init_starts_and_stops():
    backend = NoInit()
    backend.start()
    assert backend.acquiring
    backend.stop()
    assert not backend.acquiring


def test_backends_do_not_share_state(clock):
    first, second = HookBackend(clock), HookBackend(clock)
    first.start()
    second.start(at(10))
    assert first.acquiring and not second.acquiring
    assert first.pending_start is None and second.pending_start == NOW + 10


def test_replacing_a_pending_start_drops_a_stop_that_would_come_before_it(backend, clock):
    backend.start(at(10))
    backend.stop(at(20))
    backend.start(at(30))
    assert backend.pending_start == NOW + 30
    assert backend.pending_stop is None
    clock.advance(20)
    assert not backend.acquiring
    clock.advance(10)
    assert backend.acquiring
    assert backend.events == [("start", NOW + 30)]


def test_replacing_a_pending_start_keeps_a_stop_that_still_follows(backend, clock):
    backend.start(at(10))
    backend.stop(at(20))
    backend.start(at(5))
    assert (backend.pending_start, backend.pending_stop) == (NOW + 5, NOW + 20)
    clock.advance(5)
    clock.advance(15)
    assert not backend.acquiring
    assert backend.events == [("start", NOW + 5), ("stop", NOW + 20)]


def test_timed_start_at_the_same_time_as_the_pending_stop_is_refused(backend):
    backend.start()
    backend.stop(at(10))
    with pytest.raises(BackendError, match="already acquiring"):
        backend.start(at(10))


# -- a timer that runs late ----------------------------------------------------------------

def test_a_time_tagged_start_that_runs_late_says_so(backend, clock, log_events):
    backend.start(at(10))
    backend.stop(at(20))
    clock.advance(10.5)  # the reactor was blocked past the start's time
    assert backend.acquiring
    clock.advance(9.6)  # the stop runs 0.1 s late: within the threshold
    assert not backend.acquiring
    warnings = [formatEvent(event) for event in log_events
                if event["log_level"] is LogLevel.warn]
    assert warnings == ["time-tagged start ran 0.500 s after its time: the backend was busy"]


def test_a_cancelled_timer_that_fires_anyway_does_nothing(backend, clock):
    # A timer whose hook waited for the worker while the start was replaced.
    backend.start(at(10))
    stale = backend._pending_start
    backend.start(at(20))
    backend._fire_start(stale)
    backend._fire_stop(stale)
    assert not backend.acquiring and backend.pending_start == NOW + 20


# -- which methods run in the worker thread --------------------------------------------------

class Marked(Backend):
    @blocking
    def get_tpi(self, frequency=None, bandwidth=None):
        return [1.0]

    @blocking(False)
    def get_rms(self):
        return [2.0]

    def get_tp0(self, frequency=None, bandwidth=None):
        return [3.0]

    async def get_integration(self):
        return 0


class BlockingHooks(Backend):
    @blocking
    def start_acquisition(self):
        pass


@pytest.mark.parametrize("threaded", [False, True])
def test_runs_in_worker_follows_the_marks_then_the_mode(threaded):
    backend = Marked()
    assert runs_in_worker(backend.get_tpi, threaded)
    assert not runs_in_worker(backend.get_rms, threaded)
    assert runs_in_worker(backend.get_tp0, threaded) is threaded
    assert not runs_in_worker(backend.get_integration, threaded)  # async def: never
    assert runs_in_worker(lambda: None, threaded) is threaded


def test_backend_start_and_stop_run_where_the_hooks_run():
    plain, hooked = Backend(), BlockingHooks()
    for method in ("start", "stop"):
        assert not runs_in_worker(getattr(plain, method), False)
        assert runs_in_worker(getattr(plain, method), True)
        assert runs_in_worker(getattr(hooked, method), False)


def test_blocking_keeps_the_method_and_refuses_async_def():
    def method():
        return 1

    assert blocking(method) is method and method() == 1

    async def coroutine():
        return 1

    with pytest.raises(TypeError, match="is async def: it runs on the reactor"):
        blocking(coroutine)
    with pytest.raises(TypeError, match="is async def"):
        blocking(False)(coroutine)


def test_a_timer_hook_that_cannot_run_is_logged(log_events):
    _not_done(Failure(WorkerStopped("time-tagged start: the server is stopping")), "start")
    _not_done(Failure(SystemExit(1)), "stop")
    texts = [(event["log_level"], formatEvent(event)) for event in log_events]
    assert texts == [(LogLevel.info, "time-tagged start not done: the server is stopping"),
                     (LogLevel.critical, "time-tagged stop failed")]
