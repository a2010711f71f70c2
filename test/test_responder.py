"""The Responder: one grammatical reply per line, errors mapped per docs/protocol.md section 4."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.logger import LogLevel, formatEvent

from types import MappingProxyType

from discosbackend.backend import Backend
from discosbackend.commands import COMMANDS
from discosbackend.errors import BackendError, HandlerException
from discosbackend.grammar import Message, ok, parse_line, request
from discosbackend.handlers import (AlwaysFailHandler, AlwaysOkHandler, AlwaysRaiseHandler,
                                    CloseAfter, DBProtocolHandler, Handler)
from discosbackend.grammar import name_of
from discosbackend.responder import RawReply, Responder


class Hardware(Backend):
    """Refuses, breaks and stalls on request."""

    def set_configuration(self, configuration):
        if configuration == "broken":
            raise ZeroDivisionError("division by zero, really")
        if configuration == "refused":
            raise BackendError("unknown configuration 'refused', try SK00")
        if configuration == "slow":
            return defer.Deferred()  # never fires
        if configuration == "async-refused":
            return defer.fail(BackendError("hardware-error"))
        return None


def answer(responder: Responder, line: bytes) -> bytes:
    result = responder.respond(line)
    if isinstance(result, defer.Deferred):
        return responder_result(result)
    return result


def responder_result(deferred: defer.Deferred) -> bytes:
    results: list[bytes] = []
    deferred.addCallback(results.append)
    assert results, "the reply has not fired"
    return results[0]


@pytest.fixture(name="clock")
def clock_fixture() -> task.Clock:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    return clock


@pytest.fixture(name="responder")
def responder_fixture(clock) -> Responder:
    return Responder(DBProtocolHandler(Hardware(clock)), clock=clock, timeout=30)


@pytest.mark.parametrize("line, reply", [
    (b"?version", b"!version,ok,1.4\r\n"),
    (b"", b"!undefined,invalid,empty line\r\n"),
    (b"status", b"!undefined,invalid,bad message type 's': a line starts with '?' or '!'\r\n"),
    (b"?9lives", b"!undefined,invalid,bad name '9lives': a name is a letter followed by "
                 b"letters and digits and '-'\r\n"),
    (b"?get-tpi,\\q", b"!get-tpi,invalid,unknown escape \\\\q in argument 1 (the escapes "
                      b"are \\\\\\\\ and \\\\t and a backslash before a comma)\r\n"),
    (b"?status,a\\", b"!status,invalid,lone backslash at end of line\r\n"),
    (b"?status,\x1b", b"!status,invalid,control character ESC in argument 1\r\n"),
    (b"!status,ok", b"!status,invalid,requests must start with '?'\r\n"),
    (b"?frobnicate", b"!frobnicate,invalid,unknown command 'frobnicate'\r\n"),
    (b"?status,1", b"!status,fail,status takes no arguments (got 1)\r\n"),
    (b"?set-integration,x", b"!set-integration,fail,invalid integration 'x': "
                            b"expected an integer >= 0\r\n"),
    (b"?set-configuration,refused",
     b"!set-configuration,fail,unknown configuration 'refused'; try SK00\r\n"),
    (b"?set-configuration,async-refused", b"!set-configuration,fail,hardware-error\r\n"),
    (b"?get-rms", b"!get-rms,fail,not supported: get-rms\r\n"),
])
def test_each_situation_of_section_3(responder, line, reply):
    data = answer(responder, line)
    assert data == reply
    parse_line(data[:-2])


def test_unexpected_exception_is_a_short_fail_and_logged(responder, logged):
    data = answer(responder, b"?set-configuration,broken")
    assert data == (b"!set-configuration,fail,internal error: ZeroDivisionError: "
                    b"division by zero; really\r\n")
    failures = [event for event in logged if event.get("log_failure")]
    assert failures and failures[0]["log_failure"].check(ZeroDivisionError)


def test_slow_backend_times_out_with_timeout_first(responder, clock):
    pending = responder.respond(b"?set-configuration,slow")
    assert isinstance(pending, defer.Deferred) and not pending.called
    clock.advance(29)
    assert not pending.called
    clock.advance(1)
    assert responder_result(pending) == b"!set-configuration,fail,timeout after 30 s\r\n"


def test_no_timeout_waits_for_ever(clock):
    responder = Responder(DBProtocolHandler(Hardware(clock)), clock=clock)
    pending = responder.respond(b"?set-configuration,slow")
    clock.advance(10 ** 6)
    assert not pending.called


def test_debug_handlers():
    assert answer(Responder(AlwaysOkHandler()), b"?x,1,2") == b"!x,ok,1,2\r\n"
    assert answer(Responder(AlwaysFailHandler()), b"?x,1") == b"!x,fail,always fails\r\n"
    assert answer(Responder(AlwaysRaiseHandler()), b"?x") == (
        b"!x,fail,internal error: RuntimeError: always raises\r\n")


class Liar(Handler):
    """Answers with things that are not replies to the request."""

    def handle(self, message):
        if message.name == "other":
            return ok("different")
        if message.name == "request":
            return request("request")
        if message.name == "none":
            return None
        if message.name == "unsendable":
            return ok("unsendable", "\udc80\ud800")
        if message.name == "raw":
            return RawReply(b"anything\r\n")
        if message.name == "empty-reason":
            raise HandlerException()
        return ok(message.name)


@pytest.mark.parametrize("line, reply", [
    (b"?other", b"!other,fail,internal error: the handler gave no reply\r\n"),
    (b"?request", b"!request,fail,internal error: the handler gave no reply\r\n"),
    (b"?none", b"!none,fail,internal error: the handler gave no reply\r\n"),
    (b"?unsendable", b"!unsendable,fail,internal error: unrepresentable reply\r\n"),
    (b"?raw", b"anything\r\n"),
    (b"?empty-reason", b"!empty-reason,fail,HandlerException\r\n"),
])
def test_handler_answers_that_are_not_replies(line, reply):
    assert answer(Responder(Liar()), line) == reply


def test_greeting_is_the_version_reply(responder):
    assert responder.greeting() == b"!version,ok,1.4\r\n"


def test_too_long_names_the_request_when_it_can():
    responder = Responder(AlwaysOkHandler())
    assert responder.too_long(b"?set-filename,/very/long", 10) == (
        b"!set-filename,invalid,line too long: over 10 bytes\r\n")
    assert name_of(b"?" + b"a" * 500) == "undefined"  # name cut short: unreadable
    assert name_of(b"\xff\xfe") == "undefined"


def exchanges(logged: list[dict]) -> list[tuple]:
    """The exchange events logged: (level, peer, request, reply, duration in ms)."""
    return [(event["log_level"], event["peer"], event["request"], event["reply"],
             event["duration_ms"]) for event in logged if "duration_ms" in event]


@pytest.mark.parametrize("line, reply", [
    (b"?version", "!version,ok,1.4"),
    (b"?set-configuration,refused", "!set-configuration,fail,unknown configuration "
                                    "'refused'; try SK00"),
    (b"?frobnicate", "!frobnicate,invalid,unknown command 'frobnicate'"),
    (b"hello", "!undefined,invalid,bad message type 'h': a line starts with '?' or '!'"),
    (b"?status,\xff\x1b", "!status,invalid,control character ESC in argument 1"),
])
def test_respond_logged_logs_every_kind_of_exchange_once(clock, logged, line, reply):
    responder = Responder(DBProtocolHandler(Hardware(clock)), clock=clock, log_requests=True)
    assert answer(responder, line) == reply.encode() + b"\r\n"
    assert not exchanges(logged)  # respond itself never logs
    assert responder.respond_logged("10.0.0.1:4000", line) == reply.encode() + b"\r\n"
    shown = line.decode("utf-8", "replace")
    assert exchanges(logged) == [(LogLevel.debug, "10.0.0.1:4000", shown, reply, 0.0)]


def test_a_timeout_is_logged_as_an_exchange_and_as_a_warning(clock, logged):
    responder = Responder(DBProtocolHandler(Hardware(clock)), clock=clock, timeout=2.5,
                          log_requests=True)
    pending = responder.respond_logged("peer", b"?set-configuration,slow")
    assert isinstance(pending, defer.Deferred) and not exchanges(logged)
    clock.advance(2.5)
    assert responder_result(pending) == b"!set-configuration,fail,timeout after 2.5 s\r\n"
    assert exchanges(logged) == [(LogLevel.debug, "peer", "?set-configuration,slow",
                                  "!set-configuration,fail,timeout after 2.5 s", 2500.0)]
    warnings = [event for event in logged if event["log_level"] == LogLevel.warn]
    assert [formatEvent(event) for event in warnings] == [
        "no reply to ?set-configuration,slow within 2.5 s: answered fail"]


def test_a_late_reply_is_logged_with_its_duration_from_arrival(clock, logged):
    late: defer.Deferred = defer.Deferred()

    class Later(Handler):
        def handle(self, message: Message):
            return late
    responder = Responder(Later(), clock=clock, log_requests=True)
    pending = responder.respond_logged("peer", b"?x,1")
    clock.advance(0.25)
    late.callback(ok("x", "1"))
    assert responder_result(pending) == b"!x,ok,1\r\n"
    assert exchanges(logged) == [(LogLevel.debug, "peer", "?x,1", "!x,ok,1", 250.0)]


def test_an_overlong_line_is_logged_only_when_logging(clock, logged):
    quiet = Responder(AlwaysOkHandler(), clock=clock)
    quiet.too_long(b"?set-filename,/very/long", 10, "peer")
    assert not exchanges(logged)
    talkative = Responder(AlwaysOkHandler(), clock=clock, log_requests=True)
    talkative.too_long(b"?set-filename,/very/long", 10, "peer")
    assert exchanges(logged) == [(LogLevel.debug, "peer", "?set-filename,/very/long",
                                  "!set-filename,invalid,line too long: over 10 bytes", 0.0)]


def test_no_request_logging_by_default(responder, logged):
    answer(responder, b"?version")
    assert not [event for event in logged
                if event.get("log_namespace", "").startswith("discosbackend")]


def test_reply_reasons_keep_every_reply_grammatical():
    class Chatty(Handler):
        def handle(self, message: Message):
            raise HandlerException("line one,\r\nline two\x00\x1b, done")
    data = answer(Responder(Chatty()), b"?x")
    assert data == b"!x,fail,line one; line two ; done\r\n"
    assert parse_line(data).arguments == ["line one; line two ; done"]


# -- the same line always gets the same answer -----------------------------------

@pytest.mark.parametrize("line, reply", [
    (b"?set-filename,bad\\q", b"!set-filename,invalid,unknown escape \\\\q in argument 1"),
    (b"?set-filename,end\\", b"!set-filename,invalid,lone backslash at end of line"),
    (b"?status,", b"!status,fail,status takes no arguments (got 1)"),
])
def test_known_names_still_get_their_arguments_checked(responder, line, reply):
    answer(responder, b"?set-filename,warm-up")
    answer(responder, b"?status")
    assert answer(responder, line).startswith(reply)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=12).map(lambda tail: b"?" + tail) | st.sampled_from(
    [b"?a", b"?a\r", b"?a,x\r", b"?a,\\,", b"?a,\\q", b"?a,\x00", b"!a,ok", b"?a-1,\xff"]),
    min_size=1, max_size=6))
def test_a_line_seen_before_is_answered_as_the_first_time(lines):
    fresh = [answer(Responder(AlwaysOkHandler()), line) for line in lines]
    warmed = Responder(AlwaysOkHandler())
    for line in lines:
        answer(warmed, line)
    assert [answer(warmed, line) for line in lines] == fresh


# -- the request path: routes, the backend's bad results, CloseAfter --------------

class TwoValueStatus(Backend):
    """Answers status (now) and time (later) with two values each."""

    def status(self):
        return (1_700_000_000.0, "ok")

    def time(self):
        return defer.succeed((1.0, 2.0))


@pytest.mark.parametrize("line, reply, result", [
    (b"?status", b"!status,fail,backend returned 2 values for status: "
                 b"expected timestamp status acquiring\r\n", (1_700_000_000.0, "ok")),
    (b"?time", b"!time,fail,backend returned 2 values for time: expected timestamp\r\n",
     (1.0, 2.0)),
])
def test_reply_shape_error_is_a_fail_logged_as_an_error(clock, logged, line, reply, result):
    assert answer(Responder(DBProtocolHandler(TwoValueStatus(clock))), line) == reply
    events = [event for event in logged
              if event.get("log_format", "").startswith("backend answered {request}")]
    assert len(events) == 1
    assert events[0]["log_level"] == LogLevel.error
    assert events[0]["result"] == result
    assert not [event for event in logged if event.get("log_failure")]  # no traceback


def test_unknown_commands_are_invalid_every_time_and_not_remembered(responder):
    before = len(responder._routes)  # pylint: disable=protected-access
    for number in range(50):
        assert answer(responder, b"?frobnicate-%d" % number) == (
            b"!frobnicate-%d,invalid,unknown command 'frobnicate-%d'\r\n" % (number, number))
    assert answer(responder, b"?frobnicate-0") == (
        b"!frobnicate-0,invalid,unknown command 'frobnicate-0'\r\n")
    assert len(responder._routes) == before  # pylint: disable=protected-access


class Closing(Handler):
    """Closes after its reply: ``bye`` with wire bytes, ``broken`` with a failure."""

    def handle(self, message):
        if message.name == "bye":
            return CloseAfter(b"!bye,ok\r\n")
        if message.name == "bye-message":
            return CloseAfter(ok("bye-message"))
        return CloseAfter(defer.fail(BackendError("hardware-error")))


@pytest.mark.parametrize("line, reply", [
    (b"?bye", b"!bye,ok\r\n"),
    (b"?bye-message", b"!bye-message,ok\r\n"),
    (b"?broken", b"!broken,fail,hardware-error\r\n"),
])
def test_close_after_gives_a_raw_reply_that_closes(line, reply):
    data = answer(Responder(Closing()), line)
    assert isinstance(data, RawReply) and data.close_after
    assert data == reply


def test_a_handler_without_routes_answers_known_names_through_handle():
    handler = AlwaysOkHandler()
    assert not handler.routes
    assert answer(Responder(handler), b"?status,1") == b"!status,ok,1\r\n"


def test_a_routed_name_followed_by_cr_is_invalid(responder):
    assert answer(responder, b"?status").startswith(b"!status,ok,")
    data = answer(responder, b"?status\r")
    assert data.startswith(b"!undefined,invalid,bad name")
    parse_line(data)


def test_an_empty_argument_list_takes_the_route_and_fails(clock):
    handler = DBProtocolHandler(Hardware(clock))

    def unexpected(message):
        raise AssertionError("handle called")
    handler.handle = unexpected  # the route does not lead here
    assert answer(Responder(handler), b"?status,") == (
        b"!status,fail,status takes no arguments (got 1)\r\n")


class _Unrouted(DBProtocolHandler):
    """The same handler with no routes: every line is parsed and handled."""

    def __init__(self, backend):
        super().__init__(backend)
        self.routes = MappingProxyType({})


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(COMMANDS)),
       st.lists(st.sampled_from(["", "0", "1", "-1", "1.5", "*", "SK00", "\\,", "\\q", "\\",
                                 "\x00", "\r", "\t", "a b", "\xff", "1e999"]), max_size=8),
       st.sampled_from([b"", b",", b"\r", b"x"]))
def test_a_routed_line_is_answered_as_a_parsed_one(name, arguments, tail):
    clock = task.Clock()
    clock.advance(1_700_000_000)
    line = ",".join(["?" + name] + arguments).encode("utf-8", "surrogateescape") + tail
    routed = Responder(DBProtocolHandler(Hardware(clock)), clock=clock)
    parsed = Responder(_Unrouted(Hardware(clock)), clock=clock)
    assert answer(routed, line) == answer(parsed, line)


# -- no backend text or exception can drop a connection -------------------------------

class Raising(Backend):
    """get_rms raises whatever ``error`` is; set_configuration refuses with ``reason``."""

    error: BaseException = SystemExit(3)
    reason = "x"

    def get_rms(self):
        raise self.error

    def set_configuration(self, configuration):
        raise BackendError(self.reason)


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_any_base_exception_from_the_backend_gets_a_fail_reply(error, logged):
    backend = Raising()
    backend.error = error
    reply = answer(Responder(DBProtocolHandler(backend)), b"?get-rms")
    assert reply.startswith(b"!get-rms,fail,internal error: " + type(error).__name__.encode())
    assert any(event.get("log_failure") for event in logged)


@pytest.mark.parametrize("reason, cleaned", [
    ("bad\ud800word", "bad?word"),                # a lone surrogate
    ("one,two\r\nthree\x00\x1b", "one;two three"),  # commas and control characters
    ("\udcff raw byte", "? raw byte"),
])
def test_a_backend_reason_is_cleaned_for_the_wire(reason, cleaned):
    backend = Raising()
    backend.reason = reason
    reply = answer(Responder(DBProtocolHandler(backend)), b"?set-configuration,SK00")
    assert reply == b"!set-configuration,fail," + cleaned.encode() + b"\r\n"


@pytest.mark.parametrize("line", [
    b"?get-tpi," + b"1" * 16_000 + b"x",
    b"?set-enable," + "é".encode() * 8_000 + b",0",
    b"?" + b"a" * 60_000,
    b"?" + b"a" * 63 + b",x",
    b"?set-configuration,SK00," + b"\xff" * 20_000,
])
def test_an_error_reply_stays_under_512_bytes_whatever_the_request(line):
    reply = answer(Responder(DBProtocolHandler(Backend())), line)
    assert len(reply) < 512
    parsed = parse_line(reply)
    assert parsed.code in ("fail", "invalid")
    assert len(parsed.arguments[0]) <= 200
