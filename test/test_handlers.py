"""Tests for discosbackend.handlers: requests in, replies (or errors) out."""

import re
import threading
import time as time_module
from types import MappingProxyType

import pytest
import pytest_twisted
from astropy.time import Time
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, DeferredList, fail as failed_deferred, succeed
from twisted.python.failure import Failure

from discosbackend import __protocol_version__
from discosbackend.backend import Backend, blocking
from discosbackend.commands import COMMANDS, INTEGER, LIBRARY_COMMANDS, Argument, command
from discosbackend.errors import (ArgumentError, BackendError, InvalidRequest,
                                  NotSupportedError, OpenError, ReplyShapeError)
from discosbackend.grammar import FAIL, INVALID, Message, parse_message, serialize_line
from discosbackend.handlers import (AlwaysFailHandler, AlwaysOkHandler, AlwaysRaiseHandler,
                                    DBProtocolHandler, Handler, HandlerException)
from discosbackend.responder import Responder
from discosbackend.simulator import BackendSimulator, SimulatorHandler
from discosbackend.timediscos import acs_to_time, time_to_acs
from sleepy_backends import SleepyBackend

NOW = 1_700_000_000
TICKS = 17_000_000_001_234_567  # unix 1700000000.1234567
UNIX_TEXT = "1700000000.1234567"


def make_clock():
    clock = task.Clock()
    clock.advance(NOW)
    return clock


def handle(handler, line):
    """What ``handler`` answers to the request ``line``."""
    return handler.handle(parse_message(line))


def text(answer):
    """A handler's answer (wire bytes or a message) as the reply's text, no line end."""
    if isinstance(answer, bytes):
        assert answer.endswith(b"\r\n")
        return answer[:-2].decode()
    return str(answer)


def fired(deferred):
    """The result of a Deferred that has fired; raises its failure."""
    results = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


# -- a backend that records what it receives --------------------------------------

# What each recording method returns.
RETURNS = {
    "status": (acs_to_time(TICKS), "ok", True),
    "get_configuration": "SK00",
    "get_integration": 40,
    "get_tpi": [903.21, 1240.57],
    "get_tp0": (1.5, 2.5),
    "get_rms": [0.25],
    "time": acs_to_time(TICKS),
}


class RecordingBackend(Backend):
    """Every command method records its arguments and returns a fixed value."""

    def __init__(self, clock=None):
        super().__init__(clock)
        self.calls = []


def _recording(method):
    def record(self, *arguments):
        self.calls.append((method, arguments))
        return RETURNS.get(method)
    record.__name__ = method
    return record


for _command in COMMANDS.values():
    if _command.method is not None:
        setattr(RecordingBackend, _command.method, _recording(_command.method))


@pytest.fixture(name="backend")
def fixture_backend():
    return RecordingBackend(make_clock())


@pytest.fixture(name="handler")
def fixture_handler(backend):
    return DBProtocolHandler(backend)


FILENAME = "/archive/data/20250110/20250110-101012-P-Src_001_001.fits"

OK_CASES = [
    # request, reply, method called, its arguments
    ("?status", f"!status,ok,{UNIX_TEXT},ok,1", "status", ()),
    ("?get-configuration", "!get-configuration,ok,SK00", "get_configuration", ()),
    ("?set-configuration,SK00", "!set-configuration,ok", "set_configuration", ("SK00",)),
    ("?get-integration", "!get-integration,ok,40", "get_integration", ()),
    ("?set-integration,40", "!set-integration,ok", "set_integration", (40,)),
    ("?set-integration,0", "!set-integration,ok", "set_integration", (0,)),
    ("?get-tpi,0,0", "!get-tpi,ok,903.21,1240.57", "get_tpi", (None, None)),
    ("?get-tpi", "!get-tpi,ok,903.21,1240.57", "get_tpi", ()),
    ("?get-tpi,1500,300", "!get-tpi,ok,903.21,1240.57", "get_tpi", (1500.0, 300.0)),
    ("?get-tpi,1e+06", "!get-tpi,ok,903.21,1240.57", "get_tpi", (1e6,)),
    ("?get-tp0,0,0", "!get-tp0,ok,1.5,2.5", "get_tp0", (None, None)),
    ("?get-tp0", "!get-tp0,ok,1.5,2.5", "get_tp0", ()),
    ("?get-rms", "!get-rms,ok,0.25", "get_rms", ()),
    ("?time", f"!time,ok,{UNIX_TEXT}", "time", ()),
    ("?start", "!start,ok", "start", ()),
    ("?stop", "!stop,ok", "stop", ()),
    ("?set-section,0,100,1500,0,0,3000,1024", "!set-section,ok", "set_section",
     (0, 100.0, 1500.0, 0, "0", 3000.0, 1024)),
    ("?set-section,1,50.0,200.0,1,CP,10,2048", "!set-section,ok", "set_section",
     (1, 50.0, 200.0, 1, "CP", 10.0, 2048)),
    ("?set-section,-1,1e+06,1500.000000,2,FullStokes,3000,1024", "!set-section,ok",
     "set_section", (-1, 1e6, 1500.0, 2, "FullStokes", 3000.0, 1024)),
    ("?set-section,1,*,*,*,*,*,*", "!set-section,ok", "set_section",
     (1, "*", "*", "*", "*", "*", "*")),
    ("?cal-on", "!cal-on,ok", "cal_on", (0,)),
    ("?cal-on,10", "!cal-on,ok", "cal_on", (10,)),
    (f"?set-filename,{FILENAME}", "!set-filename,ok", "set_filename", (FILENAME,)),
    ("?set-filename,/data/a\\,b.fits", "!set-filename,ok", "set_filename", ("/data/a,b.fits",)),
    # the real client does not escape commas: the file name is the rest of the line
    ("?set-filename,/d/a,b.fits", "!set-filename,ok", "set_filename", ("/d/a,b.fits",)),
    ("?convert-data", "!convert-data,ok", "convert_data", ()),
    ("?set-enable,0,0", "!set-enable,ok", "set_enable", (0, 0)),
    ("?set-enable,1,-1", "!set-enable,ok", "set_enable", (1, -1)),
    ("?end-schedule", "!end-schedule,ok", "end_schedule", ()),
    ("?backend-park", "!backend-park,ok", "park", ()),
    ("?set-shift,3", "!set-shift,ok", "set_shift", (3,)),
    ("?set-shift,-3", "!set-shift,ok", "set_shift", (-3,)),
]


@pytest.mark.parametrize("line, reply, method, arguments", OK_CASES)
def test_ok(handler, backend, line, reply, method, arguments):
    answer = handle(handler, line)
    assert isinstance(answer, bytes)
    assert text(answer) == reply
    assert backend.calls == [(method, arguments)]
    received = backend.calls[0][1]
    assert [type(value) for value in received] == [type(value) for value in arguments]
    # the reply survives the wire and the client's parse of the same shape
    on_the_wire = parse_message(text(answer))
    assert serialize_line(on_the_wire) == answer
    COMMANDS[on_the_wire.name].parse_reply(on_the_wire.arguments)


def test_every_protocol_command_has_an_ok_case():
    covered = {parse_message(line).name for line, *_ in OK_CASES} | {"version"}
    assert covered == set(COMMANDS)


@pytest.mark.parametrize("name", ["start", "stop"])
@pytest.mark.parametrize("timestamp", [str(TICKS), UNIX_TEXT])
def test_start_and_stop_receive_the_exact_instant(handler, backend, name, timestamp):
    assert text(handle(handler, f"?{name},{timestamp}")) == f"!{name},ok"
    [(method, (received,))] = backend.calls
    assert method == name
    assert isinstance(received, Time)
    assert time_to_acs(received) == TICKS


def test_version_is_answered_by_the_library(handler, backend):
    assert text(handle(handler, "?version")) == "!version,ok,1.4"
    assert __protocol_version__ == "1.4"
    assert not backend.calls


FAIL_CASES = [
    ("?status,1", "status takes no arguments (got 1)"),
    ("?status,", "status takes no arguments (got 1)"),
    ("?version,1.4", "version takes no arguments (got 1)"),
    ("?get-configuration,x", "get-configuration takes no arguments (got 1)"),
    ("?set-configuration", "set-configuration needs 1 argument (got 0)"),
    ("?set-configuration,", "invalid configuration '': expected a non-empty text"),
    ("?set-configuration,a,b", "set-configuration needs 1 argument (got 2)"),
    ("?get-integration,1", "get-integration takes no arguments (got 1)"),
    ("?set-integration", "set-integration needs 1 argument (got 0)"),
    ("?set-integration,-1", "invalid integration '-1': expected an integer >= 0"),
    ("?set-integration,1.5", "invalid integration '1.5': expected an integer >= 0"),
    ("?get-tpi,1,2,3", "get-tpi takes 0 to 2 arguments (got 3)"),
    ("?get-tpi,nan,0", "invalid frequency 'nan': expected a finite number"),
    ("?get-tpi,0,abc", "invalid bandwidth 'abc': expected a finite number"),
    ("?get-tp0,0,0,0", "get-tp0 takes 0 to 2 arguments (got 3)"),
    ("?get-tp0,inf", "invalid frequency 'inf': expected a finite number"),
    ("?get-rms,0", "get-rms takes no arguments (got 1)"),
    ("?time,now", "time takes no arguments (got 1)"),
    ("?start,1,2", "start takes 0 to 1 arguments (got 2)"),
    ("?start,0", "invalid timestamp '0': expected "),
    ("?start,-17000000000000000", "invalid timestamp '-17000000000000000': expected "),
    ("?start,abc", "invalid timestamp 'abc': expected "),
    ("?stop,1,2", "stop takes 0 to 1 arguments (got 2)"),
    ("?stop,-1.5", "invalid timestamp '-1.5': expected "),
    ("?stop,", "invalid timestamp '': expected "),
    ("?set-section,0,100,1500,0,0,3000", "set-section needs 7 arguments (got 6)"),
    ("?set-section,0,100,1500,0,0,3000,1024,1", "set-section needs 7 arguments (got 8)"),
    ("?set-section", "set-section needs 7 arguments (got 0)"),
    ("?set-section,x,100,1500,0,0,3000,1024", "invalid section 'x': expected an integer or *"),
    ("?set-section,0,abc,1500,0,0,3000,1024",
     "invalid start_freq 'abc': expected a finite number or *"),
    ("?set-section,0,100,1500,0.5,0,3000,1024", "invalid feed '0.5': expected an integer or *"),
    ("?set-section,0,100,1500,0,,3000,1024", "invalid mode '': expected a non-empty text or *"),
    ("?set-section,0,100,1500,0,0,nan,1024",
     "invalid sample_rate 'nan': expected a finite number or *"),
    ("?set-section,0,100,1500,0,0,3000,**", "invalid bins '**': expected an integer or *"),
    ("?cal-on,-1", "invalid interleave '-1': expected an integer >= 0"),
    ("?cal-on,1,2", "cal-on takes 0 to 1 arguments (got 2)"),
    ("?set-filename", "set-filename needs 1 argument (got 0)"),
    ("?set-filename,", "invalid filename '': expected a non-empty text"),
    ("?convert-data,1", "convert-data takes no arguments (got 1)"),
    ("?set-enable,0", "set-enable needs 2 arguments (got 1)"),
    ("?set-enable,0,x", "invalid feed2 'x': expected an integer"),
    ("?set-enable,1.0,0", "invalid feed1 '1.0': expected an integer"),
    ("?end-schedule,now", "end-schedule takes no arguments (got 1)"),
    ("?backend-park,1", "backend-park takes no arguments (got 1)"),
    ("?set-shift", "set-shift needs 1 argument (got 0)"),
    ("?set-shift,1.5", "invalid shift '1.5': expected an integer"),
]


@pytest.mark.parametrize("line, message", FAIL_CASES)
def test_fail(handler, backend, line, message):
    with pytest.raises(ArgumentError) as caught:
        handle(handler, line)
    error = caught.value
    assert isinstance(error, HandlerException)
    assert error.code == FAIL
    if message.endswith(" "):
        assert str(error).startswith(message)
    else:
        assert str(error) == message
    assert not backend.calls


@pytest.mark.parametrize("line, name", [
    ("?set-section,0,1e999,1500,0,0,3000,1024", "start_freq"),
    ("?get-tpi,-1e999,0", "frequency"),
])
def test_float_overflowing_to_infinity_fails(handler, backend, line, name):
    # docs/protocol.md section 5: reject inf where a physical value is expected.
    with pytest.raises(ArgumentError) as caught:
        handle(handler, line)
    assert str(caught.value).startswith(f"invalid {name} ")
    assert not backend.calls


def test_every_protocol_command_has_a_fail_case():
    assert {parse_message(line).name for line, _ in FAIL_CASES} == set(COMMANDS)


def test_unknown_command_is_invalid(handler, backend):
    with pytest.raises(InvalidRequest) as caught:
        handle(handler, "?foo,1")
    assert str(caught.value) == "unknown command 'foo'"
    assert caught.value.code == INVALID
    assert isinstance(caught.value, HandlerException)
    assert not backend.calls


def test_backend_refusal_propagates(backend):
    def refuse(*_):
        raise BackendError("already acquiring")
    backend.start = refuse
    handler = DBProtocolHandler(backend)  # methods are looked up when it is made
    with pytest.raises(BackendError, match="^already acquiring$"):
        handle(handler, "?start")


def test_backend_bug_propagates_unchanged(backend):
    def crash():
        raise ZeroDivisionError("oops")
    backend.get_rms = crash
    handler = DBProtocolHandler(backend)  # methods are looked up when it is made
    with pytest.raises(ZeroDivisionError):
        handle(handler, "?get-rms")


# -- not supported -----------------------------------------------------------------------

@pytest.mark.parametrize("line", ["?get-rms", "?status", "?set-section,1,*,*,*,*,*,*",
                                  "?start", "?backend-park"])
def test_plain_object_lacks_every_method(line):
    name = parse_message(line).name
    with pytest.raises(NotSupportedError) as caught:
        handle(DBProtocolHandler(object()), line)
    assert str(caught.value) == f"not supported: {name}"
    assert caught.value.code == FAIL


def test_plain_object_still_answers_version():
    assert text(handle(DBProtocolHandler(object()), "?version")) == "!version,ok,1.4"


def test_plain_object_arguments_are_checked_before_support():
    with pytest.raises(ArgumentError):
        handle(DBProtocolHandler(object()), "?set-shift,x")


@pytest.mark.parametrize("line", [
    "?get-configuration", "?set-configuration,SK00", "?get-integration",
    "?set-integration,40", "?get-tpi,0,0", "?get-tp0", "?get-rms",
    "?set-section,0,100,1500,0,0,3000,1024", "?cal-on", "?set-filename,/a.fits",
    "?convert-data", "?set-enable,0,0", "?end-schedule", "?backend-park", "?set-shift,3",
])
def test_base_backend_does_not_support_hardware_commands(line):
    with pytest.raises(NotSupportedError) as caught:
        handle(DBProtocolHandler(Backend(make_clock())), line)
    assert str(caught.value) == f"not supported: {parse_message(line).name}"


def test_base_backend_answers_status_time_start_stop():
    handler = DBProtocolHandler(Backend(make_clock()))
    assert text(handle(handler, "?status")) == "!status,ok,1700000000.0000000,ok,0"
    assert text(handle(handler, "?time")) == "!time,ok,1700000000.0000000"
    assert text(handle(handler, "?start")) == "!start,ok"
    assert text(handle(handler, "?status")) == "!status,ok,1700000000.0000000,ok,1"
    with pytest.raises(BackendError, match="^already acquiring$"):
        handle(handler, "?start")
    assert text(handle(handler, "?stop")) == "!stop,ok"
    with pytest.raises(BackendError, match="^not acquiring$"):
        handle(handler, "?stop")


# -- a drop-in discos-backend 1.4 backend ---------------------------------------------

_NOTHING = object()


class LegacyBackend:
    """Written for discos-backend 1.4: no base class, fewer parameters."""

    def __init__(self):
        self.calls = []

    def status(self):
        return (time_module.time(), "ok", 0)

    def get_tpi(self):
        self.calls.append(("get_tpi",))
        return [903.21, 1240.57]

    def get_configuration(self):
        return ["SK00"]

    def start(self, timestamp=_NOTHING):
        self.calls.append(("start", timestamp))

    def stop(self, timestamp=None):
        raise HandlerException("not acquiring")

    def set_section(self, section, start_freq, bandwidth, feed, mode, sample_rate, bins):
        self.calls.append(("set_section", section, start_freq, bandwidth, feed, mode,
                           sample_rate, bins))

    def cal_on(self):  # 1.4 had no interleave
        self.calls.append(("cal_on",))


@pytest.mark.parametrize("line", ["?get-tpi", "?get-tpi,0,0", "?get-tpi,1500,300",
                                  "?get-tpi,1500"])
def test_legacy_get_tpi_receives_nothing(line):
    backend = LegacyBackend()
    assert text(handle(DBProtocolHandler(backend), line)) == "!get-tpi,ok,903.21,1240.57"
    assert backend.calls == [("get_tpi",)]


def test_legacy_get_tpi_arguments_are_still_checked():
    backend = LegacyBackend()
    with pytest.raises(ArgumentError):
        handle(DBProtocolHandler(backend), "?get-tpi,nan,0")
    assert not backend.calls


def test_legacy_status_tuple():
    before = time_module.time()
    reply = text(handle(DBProtocolHandler(LegacyBackend()), "?status"))
    after = time_module.time()
    match = re.fullmatch(r"!status,ok,([0-9]+\.[0-9]{7}),ok,0", reply)
    assert match, reply
    assert before - 1 <= float(match.group(1)) <= after + 1


def test_legacy_configuration_list():
    assert text(handle(DBProtocolHandler(LegacyBackend()), "?get-configuration")) == \
        "!get-configuration,ok,SK00"


def test_legacy_start_with_and_without_timestamp():
    backend = LegacyBackend()
    handler = DBProtocolHandler(backend)
    assert text(handle(handler, "?start")) == "!start,ok"
    assert text(handle(handler, f"?start,{TICKS}")) == "!start,ok"
    assert backend.calls[0] == ("start", _NOTHING)
    _, received = backend.calls[1]
    assert isinstance(received, Time)
    assert time_to_acs(received) == TICKS


def test_legacy_handler_exception_propagates():
    with pytest.raises(HandlerException) as caught:
        handle(DBProtocolHandler(LegacyBackend()), "?stop")
    assert str(caught.value) == "not acquiring"
    assert caught.value.code == FAIL


def test_legacy_cal_on_without_interleave_and_full_set_section():
    backend = LegacyBackend()
    handler = DBProtocolHandler(backend)
    assert text(handle(handler, "?cal-on")) == "!cal-on,ok"
    assert text(handle(handler, "?set-section,0,100,1500,0,0,3000,1024")) == "!set-section,ok"
    assert backend.calls == [("cal_on",),
                             ("set_section", 0, 100.0, 1500.0, 0, "0", 3000.0, 1024)]


def test_legacy_missing_command_is_not_supported():
    with pytest.raises(NotSupportedError, match="^not supported: get-rms$"):
        handle(DBProtocolHandler(LegacyBackend()), "?get-rms")


# -- asynchronous backends -------------------------------------------------------------

class AsyncBackend(Backend):
    """Answers later, on its clock."""

    def get_tpi(self, frequency=None, bandwidth=None):
        deferred = Deferred()
        self.clock.callLater(5, deferred.callback, [frequency or 1.0, 2.0])
        return deferred

    async def get_rms(self):
        await task.deferLater(self.clock, 2, lambda: None)
        return [0.5, 0.75]

    async def get_integration(self):
        return 40

    def status(self):
        return task.deferLater(self.clock, 1, lambda: (self.clock.seconds(), "ok"))

    async def time(self):
        raise BackendError("clock unsynchronised")

    def get_configuration(self):
        return succeed("SK00")

    def set_configuration(self, configuration):
        return failed_deferred(BackendError(f"no configuration {configuration}"))


@pytest.fixture(name="async_handler")
def fixture_async_handler():
    clock = make_clock()
    return clock, DBProtocolHandler(AsyncBackend(clock))


def test_deferred_fires_later(async_handler):
    clock, handler = async_handler
    answer = handle(handler, "?get-tpi,1500,0")
    assert isinstance(answer, Deferred)
    assert not answer.called
    clock.advance(4.9)
    assert not answer.called
    clock.advance(0.1)
    assert text(fired(answer)) == "!get-tpi,ok,1500.0,2.0"


def test_coroutine_fires_later(async_handler):
    clock, handler = async_handler
    answer = handle(handler, "?get-rms")
    assert isinstance(answer, Deferred)
    assert not answer.called
    clock.advance(2)
    assert text(fired(answer)) == "!get-rms,ok,0.5,0.75"


def test_coroutine_without_await(async_handler):
    _, handler = async_handler
    answer = handle(handler, "?get-integration")
    assert isinstance(answer, Deferred)
    assert text(fired(answer)) == "!get-integration,ok,40"


def test_already_fired_deferred(async_handler):
    _, handler = async_handler
    assert text(fired(handle(handler, "?get-configuration"))) == "!get-configuration,ok,SK00"


def test_async_refusal_fails_the_deferred(async_handler):
    _, handler = async_handler
    with pytest.raises(BackendError, match="^no configuration SK00$"):
        fired(handle(handler, "?set-configuration,SK00"))
    with pytest.raises(BackendError, match="^clock unsynchronised$"):
        fired(handle(handler, "?time"))


def test_async_bad_shape_fails_the_deferred(async_handler):
    clock, handler = async_handler
    answer = handle(handler, "?status")
    clock.advance(1)
    with pytest.raises(ReplyShapeError) as caught:
        fired(answer)
    assert str(caught.value).startswith("backend returned 2 values for status")


def test_sync_bad_shape_raises(backend):
    backend.status = lambda: (NOW, "ok")
    handler = DBProtocolHandler(backend)  # methods are looked up when it is made
    with pytest.raises(ReplyShapeError) as caught:
        handle(handler, "?status")
    assert str(caught.value) == \
        "backend returned 2 values for status: expected timestamp status acquiring"


def test_sync_bad_value_raises(backend):
    backend.get_tpi = lambda *_: [1.0, "lots"]
    handler = DBProtocolHandler(backend)  # methods are looked up when it is made
    with pytest.raises(ReplyShapeError) as caught:
        handle(handler, "?get-tpi")
    assert str(caught.value) == "get-tpi value: expected a finite number; got 'lots'"


def test_returned_values_of_set_commands_are_ignored(backend):
    backend.set_shift = lambda shift: "shifted"
    handler = DBProtocolHandler(backend)  # methods are looked up when it is made
    assert text(handle(handler, "?set-shift,3")) == "!set-shift,ok"


# -- extension commands ----------------------------------------------------------------

class SweepBackend(RecordingBackend):
    """A backend with an extension command."""

    @command("target-sweep", Argument("points", INTEGER))
    def target_sweep(self, points):
        """Sweep across the target."""
        self.calls.append(("target_sweep", (points,)))
        return [points, "points", 1.5]


def test_extension_command_is_answered():
    backend = SweepBackend(make_clock())
    handler = DBProtocolHandler(backend)
    assert text(handle(handler, "?target-sweep,10")) == "!target-sweep,ok,10,points,1.5"
    assert backend.calls == [("target_sweep", (10,))]
    # the standard commands still work
    assert text(handle(handler, "?cal-on")) == "!cal-on,ok"


@pytest.mark.parametrize("line, message", [
    ("?target-sweep,ten", "invalid points 'ten': expected an integer"),
    ("?target-sweep", "target-sweep needs 1 argument (got 0)"),
    ("?target-sweep,1,2", "target-sweep needs 1 argument (got 2)"),
])
def test_extension_command_bad_arguments(line, message):
    backend = SweepBackend(make_clock())
    with pytest.raises(ArgumentError) as caught:
        handle(DBProtocolHandler(backend), line)
    assert str(caught.value) == message
    assert not backend.calls


def test_extension_command_unknown_to_other_backends(handler):
    with pytest.raises(InvalidRequest, match="^unknown command 'target-sweep'$"):
        handle(handler, "?target-sweep,10")


# -- ?help: the library's own extension command ------------------------------------

def test_help_lists_every_command_answered_extensions_included():
    handler = DBProtocolHandler(SweepBackend(make_clock()))
    names = parse_message(text(handle(handler, "?help"))).arguments
    assert names == [*COMMANDS, *LIBRARY_COMMANDS, "target-sweep"]


@pytest.mark.parametrize("line, values", [
    ("?help,target-sweep", ["target-sweep,<points:integer>", "Sweep across the target."]),
    ("?help,cal-on", ["cal-on[,<interleave:unsigned>]",
                      "calibration mark every N samples (0: off)"]),
    ("?help,help", ["help[,<command:word>]", LIBRARY_COMMANDS["help"].summary]),
])
def test_help_with_a_name_gives_its_usage_and_summary(line, values):
    handler = DBProtocolHandler(SweepBackend(make_clock()))
    reply = text(handle(handler, line))
    assert parse_message(reply).arguments == values
    assert "\\," in reply or "," not in values[0]  # commas in the usage are escaped


@pytest.mark.parametrize("line, message", [
    ("?help,nosuch", "unknown command 'nosuch'"),
    ("?help,a,b", "help takes 0 to 1 arguments (got 2)"),
    ("?help,two words", "invalid command 'two words': expected one word"),
])
def test_help_refuses(line, message):
    with pytest.raises(ArgumentError, match=f"^{re.escape(message)}$"):
        handle(DBProtocolHandler(SweepBackend(make_clock())), line)


def test_a_backend_may_answer_help_itself():
    class OwnHelp(Backend):
        @command("help", summary="our own")
        def own_help(self):
            return ["read the manual"]
    handler = DBProtocolHandler(OwnHelp(make_clock()))
    assert text(handle(handler, "?help")) == "!help,ok,read the manual"


def test_help_goes_through_an_overridden_handle_when_served():
    class Counting(DBProtocolHandler):
        seen: list = []

        def handle(self, message):
            self.seen.append(message.name)
            return super().handle(message)
    handler = Counting(SweepBackend(make_clock()))
    assert Responder(handler).respond(b"?help,cal-on").startswith(b"!help,ok,cal-on")
    assert handler.seen == ["help"]


# -- debug handlers -------------------------------------------------------------------

def test_always_ok_echoes_arguments():
    assert text(handle(AlwaysOkHandler(), "?foo,a,b\\,c")) == "!foo,ok,a,b\\,c"
    assert text(handle(AlwaysOkHandler(), "?status")) == "!status,ok"


def test_always_fail():
    answer = handle(AlwaysFailHandler(), "?status,1")
    assert answer.code == FAIL
    assert str(answer) == "!status,fail,always fails"


def test_always_raise():
    with pytest.raises(RuntimeError, match="always raises"):
        handle(AlwaysRaiseHandler(), "?status")


def test_base_handler_is_abstract_and_hooks_do_nothing():
    base = Handler()
    base.start()
    base.stop()
    with pytest.raises(NotImplementedError):
        handle(base, "?status")


# -- start/stop hooks -------------------------------------------------------------------

class OpenCloseBackend:
    def __init__(self):
        self.events = []

    def open(self):
        self.events.append("open")

    def close(self):
        self.events.append("close")


def test_start_and_stop_call_open_and_close():
    backend = OpenCloseBackend()
    handler = DBProtocolHandler(backend)
    handler.start()
    assert backend.events == ["open"]
    handler.stop()
    assert backend.events == ["open", "close"]


def test_start_and_stop_without_open_and_close():
    handler = DBProtocolHandler(object())
    handler.start()
    handler.stop()


def test_stop_closes_a_backend_with_a_pending_start():
    clock = make_clock()
    backend = Backend(clock)
    handler = DBProtocolHandler(backend)
    handler.start()
    handle(handler, f"?start,{NOW + 10}.0")
    assert backend.pending_start == NOW + 10
    handler.stop()
    assert backend.pending_start is None
    clock.advance(20)
    assert not backend.acquiring


# -- routes: built once, when the handler is made ----------------------------------

def test_every_command_has_a_route(handler):
    assert set(handler.routes) == set(handler.commands) == set(COMMANDS) | {"help"}


def test_methods_are_looked_up_when_the_handler_is_made(backend, handler):
    backend.get_integration = lambda: 99  # too late: the route holds the old method
    assert text(handle(handler, "?get-integration")) == "!get-integration,ok,40"
    assert text(handle(DBProtocolHandler(backend), "?get-integration")) == \
        "!get-integration,ok,99"


def test_a_subclass_that_overrides_handle_is_answered_through_it(backend):
    class Renaming(DBProtocolHandler):
        def handle(self, message):
            return Message("!", message.name, "fail", ["renamed"])

    answer = Renaming(backend).handle(parse_message("?status"))
    assert str(answer) == "!status,fail,renamed"
    assert not backend.calls


def test_a_subclass_that_overrides_handle_sees_known_commands_when_served(backend):
    seen = []

    class Rewriting(DBProtocolHandler):
        def handle(self, message):
            seen.append(message)
            if message.name == "status":
                return Message("!", "status", "fail", ["rewritten"])
            return super().handle(message)

    responder = Responder(Rewriting(backend))
    assert responder.respond(b"?status") == b"!status,fail,rewritten\r\n"
    assert responder.respond(b"?get-tpi,1500,0") == b"!get-tpi,ok,903.21,1240.57\r\n"
    assert seen == [parse_message("?status"), parse_message("?get-tpi,1500,0")]
    assert backend.calls == [("get_tpi", (1500.0, None))]


def test_a_plain_handlers_routes_are_its_answers_not_handle(handler):
    def unexpected(message):
        raise AssertionError("handle called")
    handler.handle = unexpected  # an instance attribute: the routes do not lead here
    assert handler.routes["get-integration"]([]) == b"!get-integration,ok,40\r\n"
    assert handler.routes["version"]([]) == b"!version,ok,1.4\r\n"


def test_routes_are_read_only(handler):
    assert isinstance(handler.routes, MappingProxyType)
    with pytest.raises(TypeError):
        handler.routes["status"] = lambda arguments: b"!status,ok\r\n"
    with pytest.raises(TypeError):
        del handler.routes["status"]
    assert isinstance(Handler.routes, MappingProxyType) and not Handler.routes


class LateShapeBackend(Backend):
    """Answers later with two values where three (status) or one (time) are due."""

    def status(self):
        return succeed((NOW, "ok"))

    async def time(self):
        return (NOW, NOW)


@pytest.mark.parametrize("name, result", [
    ("status", (NOW, "ok")),  # from a Deferred
    ("time", (NOW, NOW)),  # from a coroutine
])
def test_a_late_result_of_the_wrong_shape_is_a_reply_shape_error(name, result):
    answer = DBProtocolHandler(LateShapeBackend(make_clock())).routes[name]([])
    assert isinstance(answer, Deferred)
    with pytest.raises(ReplyShapeError, match=f"^backend returned 2 values for {name}:") \
            as caught:
        fired(answer)
    assert caught.value.result == result


# -- speaking an older protocol ----------------------------------------------------

@pytest.mark.parametrize("served", [DBProtocolHandler, SimulatorHandler])
def test_a_handler_speaks_the_protocol_version_it_is_given(served):
    backend = BackendSimulator() if served is SimulatorHandler else RecordingBackend()
    responder = Responder(served(backend, protocol="1.2"))
    assert responder.greeting() == b"!version,ok,1.2\r\n"
    assert responder.respond(b"?version") == b"!version,ok,1.2\r\n"
    assert responder.respond(b"?set-enable,0,0") == (
        b"!set-enable,invalid,unknown command 'set-enable'\r\n")
    assert responder.respond(b"?backend-park") == (
        b"!backend-park,invalid,unknown command 'backend-park'\r\n")
    assert responder.respond(b"?convert-data").startswith(b"!convert-data,")
    assert not responder.respond(b"?convert-data").startswith(b"!convert-data,invalid")
    assert responder.respond(b"?get-rms").startswith(b"!get-rms,ok,")


def test_get_rms_can_be_left_out():
    handler = DBProtocolHandler(RecordingBackend(), client_commands=False)
    assert "get-rms" not in handler.routes and handler.protocol == __protocol_version__
    assert Responder(handler).respond(b"?get-rms") == (
        b"!get-rms,invalid,unknown command 'get-rms'\r\n")


def test_an_unknown_protocol_version_is_refused():
    with pytest.raises(ValueError, match="unknown protocol version '2.0'"):
        DBProtocolHandler(RecordingBackend(), protocol="2.0")


# -- threaded: blocking backend code in the worker thread ------------------------------
#
# These run the real reactor (pytest-twisted's): the worker delivers results
# through it.  Blocking calls wait on SleepyBackend.gate, opened by the test.

MAIN = threading.main_thread().name
WORKER = "discos-backend SleepyBackend"


@pytest.fixture(name="threaded")
def fixture_threaded():
    handler = DBProtocolHandler(SleepyBackend(clock=make_clock()), threaded=True)
    handler.start()
    yield handler
    handler.backend.gate.set()
    handler.stop()


def route(handler, line):
    """What the route of the request ``line`` answers: bytes, or a Deferred of them."""
    name, _, arguments = line[1:].partition(",")
    return handler.routes[name](arguments.split(",") if arguments else [])


@pytest_twisted.inlineCallbacks
def test_threaded_methods_run_in_the_worker_thread(threaded):
    answer = route(threaded, "?get-tpi,0,0")
    assert isinstance(answer, Deferred)
    assert (yield answer) == b"!get-tpi,ok,903.21,1240.57\r\n"
    assert threaded.backend.calls == [("open", WORKER), ("get_tpi", WORKER)]


@pytest_twisted.inlineCallbacks
def test_threaded_version_and_argument_errors_are_answered_on_the_reactor_at_once(threaded):
    blocked = route(threaded, "?wait")  # the worker is busy from now on
    assert route(threaded, "?version") == b"!version,ok,1.4\r\n"
    with pytest.raises(ArgumentError, match="invalid integration 'x'"):
        route(threaded, "?set-integration,x")
    with pytest.raises(ArgumentError, match="set-section needs 7 arguments"):
        route(threaded, "?set-section,1,2")
    assert route(threaded, "?is-sleeping") == b"!is-sleeping,ok,0\r\n"  # @blocking(False)
    threaded.backend.gate.set()
    assert (yield blocked) == b"!wait,ok,waited\r\n"
    assert threaded.backend.events == ["open", "wait", "waited"]


@pytest_twisted.inlineCallbacks
def test_threaded_calls_keep_their_order_and_errors(threaded):
    answers = [route(threaded, line) for line in
               ("?wait", "?set-integration,40", "?get-integration", "?set-configuration,x")]
    threaded.backend.gate.set()
    replies = yield DeferredList(answers, consumeErrors=True)
    assert [value for success, value in replies[:3]] == [
        b"!wait,ok,waited\r\n", b"!set-integration,ok\r\n", b"!get-integration,ok,40\r\n"]
    assert replies[3][1].check(NotSupportedError)  # the base class's: raised in the worker
    assert threaded.backend.events == ["open", "wait", "waited", "set_integration 40",
                                       "get_integration"]


class Generating(Backend):
    def __init__(self):
        super().__init__()
        self.read_in = []

    def get_tpi(self, frequency=None, bandwidth=None):
        self.read_in.append(threading.current_thread().name)
        for value in (1.5, 2.5):
            self.read_in.append(threading.current_thread().name)
            yield value

    async def get_rms(self):
        self.read_in.append(threading.current_thread().name)
        return [0.5]


@pytest_twisted.inlineCallbacks
def test_threaded_generators_are_read_in_the_worker_and_async_methods_stay_on_the_reactor():
    backend = Generating()
    handler = DBProtocolHandler(backend, threaded=True)
    handler.start()
    try:
        assert (yield route(handler, "?get-tpi")) == b"!get-tpi,ok,1.5,2.5\r\n"
        assert backend.read_in == ["discos-backend Generating"] * 3
        assert (yield route(handler, "?get-rms")) == b"!get-rms,ok,0.5\r\n"
        assert backend.read_in[-1] == MAIN
    finally:
        handler.stop()


@pytest_twisted.inlineCallbacks
def test_a_method_marked_blocking_runs_in_the_worker_without_threaded():
    backend = SleepyBackend(clock=make_clock())
    handler = DBProtocolHandler(backend)  # only wait/sleep (marked below) go to the worker
    assert handler.worker is None
    handler = DBProtocolHandler(Marked(backend))
    handler.start()
    try:
        assert route(handler, "?get-tpi") == b"!get-tpi,ok,903.21,1240.57\r\n"  # on the reactor
        assert (yield route(handler, "?get-integration")) == b"!get-integration,ok,0\r\n"
        assert backend.calls[-2:] == [("get_tpi", MAIN), ("get_integration",
                                                          "discos-backend Marked")]
    finally:
        handler.stop()


class Marked:
    """A plain (1.4-style) backend with one method marked @blocking."""

    def __init__(self, inner):
        self.inner = inner

    def get_tpi(self):
        return self.inner.get_tpi()

    @blocking
    def get_integration(self):
        return self.inner.get_integration()


def test_threaded_open_failure_is_an_open_error_naming_the_backend():
    handler = DBProtocolHandler(SleepyBackend("10.0.0.5", fail_open=True), threaded=True)
    with pytest.raises(OpenError, match=r"^SleepyBackend.open\(\) failed: "
                                        r"ConnectionRefusedError: no spectrometer at "
                                        r"10.0.0.5:7000$"):
        handler.start()
    assert handler.backend.calls == [("open", "discos-backend SleepyBackend")]
    assert handler.worker.stop(0)  # already stopped


def test_open_failure_without_worker_is_an_open_error_too():
    with pytest.raises(OpenError, match=r"SleepyBackend.open\(\) failed"):
        DBProtocolHandler(SleepyBackend(fail_open=True)).start()


@pytest_twisted.inlineCallbacks
def test_threaded_close_runs_in_the_worker_after_the_running_call(threaded, capsys):
    running = route(threaded, "?wait")
    queued = route(threaded, "?get-tpi")
    assert threaded.backend.waiting.wait(10)  # the worker has taken the first call
    reactor.callInThread(threaded.backend.gate.set)  # while stop() below waits for it
    threaded.stop()
    assert (yield running) == b"!wait,ok,waited\r\n"
    assert not queued.called  # dropped: its connection would be closed by now
    assert threaded.backend.events == ["open", "wait", "waited", "close"]
    assert threaded.backend.calls[-1] == ("close", WORKER)
    assert "closed after open, wait, waited, close" in capsys.readouterr().out


@pytest_twisted.inlineCallbacks
def test_threaded_time_tagged_start_fires_on_time_while_the_worker_is_busy(threaded):
    backend, clock = threaded.backend, threaded.backend.clock
    assert (yield route(threaded, f"?start,{NOW + 10}.0")) == b"!start,ok\r\n"
    busy = route(threaded, "?wait")
    assert backend.waiting.wait(10)
    clock.advance(10)  # the timer fires on the reactor: the hook queues for the worker
    assert threaded.worker.running == "wait()"
    assert threaded.worker.waiting == ["time-tagged start"]
    later = route(threaded, "?get-integration")  # comes after the time: queued after the hook
    # Backend's own status is answered at once, busy worker or not
    assert route(threaded, "?status") == f"!status,ok,{NOW + 10}.0000000,ok,0\r\n".encode()
    backend.gate.set()
    assert (yield busy) == b"!wait,ok,waited\r\n"
    assert (yield later) == b"!get-integration,ok,0\r\n"
    assert backend.calls[-3:] == [("waited", WORKER), ("start_acquisition", WORKER),
                                  ("get_integration", WORKER)]
    assert route(threaded, "?status").endswith(b",ok,1\r\n")


@pytest_twisted.inlineCallbacks
def test_threaded_stop_now_cancels_a_pending_start_whose_hook_waits(threaded):
    backend, clock = threaded.backend, threaded.backend.clock
    yield route(threaded, f"?start,{NOW + 10}.0")
    busy = route(threaded, "?wait")
    stop = route(threaded, "?stop")  # sent before the start's time: cancels it
    clock.advance(10)  # the start's hook queues behind the stop
    backend.gate.set()
    yield busy
    assert (yield stop) == b"!stop,ok\r\n"
    yield route(threaded, "?get-integration")  # after whatever the timer queued
    assert route(threaded, "?status").endswith(b",ok,0\r\n")
    assert "start_acquisition" not in backend.events


@pytest_twisted.inlineCallbacks
def test_the_simulator_handler_can_be_threaded():
    from discosbackend.simulator import BackendSimulator, SimulatorHandler
    handler = SimulatorHandler(BackendSimulator(), threaded=True)
    handler.start()
    try:
        reply = yield handler.routes["get-configuration"]([])
        assert reply == b"!get-configuration,ok,unconfigured\r\n"
    finally:
        handler.stop()
    assert handler.threaded and handler.worker is not None
