"""Framing, greeting and reply ordering of DBProtocol, on StringTransport."""

from __future__ import annotations

import random

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher

from discosbackend.backend import Backend
from discosbackend.grammar import parse_line
from discosbackend.handlers import AlwaysOkHandler, DBProtocolHandler, Handler
from discosbackend.protocol import DBProtocol, DBProtocolFactory
from discosbackend.responder import RawReply
from discosbackend.grammar import ok


class SlowBackend(Backend):
    """get-tpi answers after ``delay`` seconds on the clock; status at once."""

    delay = 5.0

    def get_tpi(self, frequency=None, bandwidth=None):
        return task.deferLater(self.clock, self.delay, lambda: [1.0, 2.0])

    def get_rms(self):
        return task.deferLater(self.clock, self.delay / 2, lambda: [3.0])


def connect(handler: Handler, clock: task.Clock | None = None, **options):
    """A connected protocol and its transport; greeting already written."""
    clock = clock or task.Clock()
    factory = DBProtocolFactory(handler, clock=clock, **options)
    factory.startFactory()
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, factory


def lines(transport: StringTransport) -> list[bytes]:
    """The reply lines written so far, each checked to end in CR LF."""
    data = transport.value()
    assert data.endswith(b"\r\n") or not data
    parts = data.split(b"\r\n")[:-1]
    assert all(b"\n" not in part and b"\r" not in part for part in parts)
    return parts


@pytest.fixture(name="clock")
def clock_fixture() -> task.Clock:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    return clock


def test_greeting_is_the_version_reply_and_comes_first(clock):
    _, transport, _ = connect(DBProtocolHandler(Backend(clock)), clock)
    assert transport.value() == b"!version,ok,1.4\r\n"


def test_debug_handler_greets_like_every_server():
    protocol, transport, _ = connect(AlwaysOkHandler())
    assert transport.value() == b"!version,ok,1.4\r\n"
    protocol.dataReceived(b"?version\n?version,x\n")
    assert lines(transport)[1:] == [b"!version,ok,1.4", b"!version,ok,x"]


@pytest.mark.parametrize("terminator", [b"\r\n", b"\n"])
def test_accepts_crlf_and_lf_always_answers_crlf(clock, terminator):
    protocol, transport, _ = connect(DBProtocolHandler(Backend(clock)), clock)
    transport.clear()
    protocol.dataReceived(b"?version" + terminator + b"?status" + terminator)
    assert lines(transport) == [b"!version,ok,1.4", b"!status,ok,1700000000.0000000,ok,0"]


def test_input_one_byte_at_a_time(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock)
    transport.clear()
    stream = b"?a,1\r\n?b,2\n?c\r\n"
    for index in range(len(stream)):
        protocol.dataReceived(stream[index:index + 1])
    assert lines(transport) == [b"!a,ok,1", b"!b,ok,2", b"!c,ok"]


def test_many_lines_in_one_packet(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock)
    transport.clear()
    protocol.dataReceived(b"".join(b"?n,%d\r\n" % i for i in range(500)))
    assert lines(transport) == [b"!n,ok,%d" % i for i in range(500)]


def test_partial_line_waits_for_its_end(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock)
    transport.clear()
    protocol.dataReceived(b"?abc,de")
    assert transport.value() == b""
    protocol.dataReceived(b"f\r")
    assert transport.value() == b""
    protocol.dataReceived(b"\n")
    assert lines(transport) == [b"!abc,ok,def"]


def test_replies_keep_request_order_behind_a_slow_backend(clock):
    protocol, transport, _ = connect(DBProtocolHandler(SlowBackend(clock)), clock)
    transport.clear()
    protocol.dataReceived(b"?get-tpi\n?status\n?get-rms\n?version\n")
    assert transport.value() == b""  # all wait behind get-tpi
    clock.advance(SlowBackend.delay / 2)  # get-rms is ready, still behind get-tpi
    assert transport.value() == b""
    clock.advance(SlowBackend.delay / 2)
    assert [line.split(b",")[0] for line in lines(transport)] == [
        b"!get-tpi", b"!status", b"!get-rms", b"!version"]
    assert lines(transport)[0] == b"!get-tpi,ok,1.0,2.0"
    transport.clear()
    protocol.dataReceived(b"?status\n")  # queue drained: answered at once
    assert lines(transport)[0].startswith(b"!status,ok,")


def test_every_line_gets_exactly_one_reply_with_bad_lines_mixed_in(clock):
    protocol, transport, _ = connect(DBProtocolHandler(Backend(clock)), clock)
    transport.clear()
    stream = (b"?status\n\n!status,ok\n??\n?bad\\q\n?foo\n?status,1\n"
              b"?x\x00y\n\xff\xfe\n?time\n")
    protocol.dataReceived(stream)
    replies = lines(transport)
    assert len(replies) == stream.count(b"\n")
    assert [reply.split(b",")[1] for reply in replies] == [
        b"ok", b"invalid", b"invalid", b"invalid", b"invalid", b"invalid", b"fail",
        b"invalid", b"invalid", b"ok"]
    for reply in replies:
        parse_line(reply)  # every reply is grammatical


def test_overlong_line_is_answered_invalid_and_connection_lives(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock, max_line=100)
    transport.clear()
    protocol.dataReceived(b"?long," + b"x" * 200 + b"\n?after\n")
    assert lines(transport) == [b"!long,invalid,line too long: over 100 bytes",
                                b"!after,ok"]
    assert not transport.disconnecting


def test_overlong_line_without_end_is_discarded_as_it_arrives(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock, max_line=100)
    transport.clear()
    protocol.dataReceived(b"?big," + b"y" * 150)
    assert lines(transport) == [b"!big,invalid,line too long: over 100 bytes"]
    for _ in range(1000):  # a megabyte more of the same line
        protocol.dataReceived(b"z" * 1000)
        assert len(protocol._buffer) == 0  # pylint: disable=protected-access
    protocol.dataReceived(b"zzz\r\n?next,1\r\n")
    assert lines(transport) == [b"!big,invalid,line too long: over 100 bytes",
                                b"!next,ok,1"]


def test_line_exactly_at_the_limit_is_accepted(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock, max_line=100)
    transport.clear()
    line = b"?x," + b"a" * 97
    assert len(line) == 100
    for chunk in (line[:60], line[60:] + b"\r", b"\n"):
        protocol.dataReceived(chunk)
    assert lines(transport) == [b"!x,ok," + b"a" * 97]


def test_overlong_garbage_gets_undefined_name(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock, max_line=100)
    transport.clear()
    protocol.dataReceived(b"\xff" * 300 + b"\n")
    assert lines(transport) == [b"!undefined,invalid,line too long: over 100 bytes"]


def test_overlong_line_with_a_bad_type_char_gets_undefined_name_as_a_short_one_does(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock, max_line=100)
    transport.clear()
    protocol.dataReceived(b"xstatus," + b"1" * 300 + b"\nxstatus,1\n")
    assert [line.split(b",")[:2] for line in lines(transport)] == [
        [b"!undefined", b"invalid"], [b"!undefined", b"invalid"]]


def test_non_utf8_bytes_round_trip_and_do_not_break_the_connection(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock)
    transport.clear()
    protocol.dataReceived(b"?echo,caf\xc3\xa9,\xff\xfe\x80\r\n")
    assert lines(transport) == [b"!echo,ok,caf\xc3\xa9,\xff\xfe\x80"]


def test_disconnect_while_a_reply_is_pending_loses_nothing_else(clock):
    backend = SlowBackend(clock)
    factory = DBProtocolFactory(DBProtocolHandler(backend), clock=clock)
    first, second = factory.buildProtocol(None), factory.buildProtocol(None)
    first_transport, second_transport = StringTransport(), StringTransport()
    first.makeConnection(first_transport)
    second.makeConnection(second_transport)
    first.dataReceived(b"?get-tpi\n?status\n")
    first.connectionLost(None)
    assert first not in factory.connections
    assert not first._queue  # pylint: disable=protected-access
    first_transport.clear()
    second_transport.clear()
    second.dataReceived(b"?get-tpi\n")
    clock.advance(SlowBackend.delay)
    assert first_transport.value() == b""  # the late reply went nowhere
    assert lines(second_transport) == [b"!get-tpi,ok,1.0,2.0"]
    assert not clock.getDelayedCalls()


def test_close_connections_closes_each_and_fires(clock):
    factory = DBProtocolFactory(AlwaysOkHandler(), clock=clock)
    protocols = [factory.buildProtocol(None) for _ in range(3)]
    for protocol in protocols:
        protocol.makeConnection(StringTransport())
    closed = factory.close_connections()
    assert not closed.called
    for protocol in protocols:
        assert protocol.transport.disconnecting
        protocol.connectionLost(None)
    assert closed.called
    assert not factory.connections
    assert protocols[0].close().called  # closing a closed connection is a no-op


class RawHandler(Handler):
    """Answers ``garbage`` with raw bytes and ``bye`` by closing after replying."""

    def handle(self, message):
        if message.name == "garbage":
            return RawReply(b"#$%garbage\r\n")
        if message.name == "bye":
            return RawReply(b"!bye,ok\r\n", close_after=True)
        return ok(message.name)


def test_raw_replies_are_written_verbatim_and_may_close(clock):
    protocol, transport, _ = connect(RawHandler(), clock)
    transport.clear()
    protocol.dataReceived(b"?garbage\n?x\n?bye\n?never\n")
    assert transport.value() == b"#$%garbage\r\n!x,ok\r\n!bye,ok\r\n"
    assert transport.disconnecting


def test_raw_reply_close_after_a_pending_reply(clock):
    class Later(RawHandler):
        def handle(self, message):
            if message.name == "later":
                return task.deferLater(clock, 1, ok, "later")
            return super().handle(message)
    protocol, transport, _ = connect(Later(), clock)
    transport.clear()
    protocol.dataReceived(b"?later\n?bye\n")
    assert transport.value() == b""
    clock.advance(1)
    assert transport.value() == b"!later,ok\r\n!bye,ok\r\n"
    assert transport.disconnecting


def test_factory_start_and_stop_call_the_handler_hooks():
    calls = []

    class Hooked(Handler):
        def start(self):
            calls.append("start")

        def stop(self):
            calls.append("stop")
    factory = DBProtocolFactory(Hooked())
    factory.startFactory()
    factory.stopFactory()
    assert calls == ["start", "stop"]


def test_max_line_must_be_sensible():
    with pytest.raises(ValueError, match="max_line"):
        DBProtocolFactory(AlwaysOkHandler(), max_line=3)


def test_random_chunking_gives_the_same_replies(clock):
    rng = random.Random(1234)
    stream = b"".join(rng.choice([b"?status\r\n", b"?get-tpi,0,0\n", b"?nope\n",
                                  b"garbage\n", b"?version\r\n", b"\n"])
                      for _ in range(300))
    expected = None
    for _ in range(5):
        protocol, transport, _ = connect(DBProtocolHandler(SlowBackend(clock)), clock)
        transport.clear()
        position = 0
        while position < len(stream):
            size = rng.randint(1, 40)
            protocol.dataReceived(stream[position:position + size])
            position += size
        clock.advance(SlowBackend.delay)
        replies = [reply.split(b",")[:2] for reply in lines(transport)]
        assert len(replies) == stream.count(b"\n")
        expected = expected or replies
        assert replies == expected


def test_deferred_reply_that_errbacks_still_gives_one_reply_in_order(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock)
    transport.clear()
    broken: defer.Deferred = defer.Deferred()
    protocol._send(broken)  # pylint: disable=protected-access
    protocol.dataReceived(b"?after\n")
    assert transport.value() == b""
    broken.errback(RuntimeError("boom"))
    assert lines(transport) == [b"!undefined,fail,internal error: reply lost", b"!after,ok"]
    assert isinstance(protocol, DBProtocol)


def test_half_close_gets_every_reply_then_closes(clock):
    protocol, transport, _ = connect(DBProtocolHandler(SlowBackend(clock)), clock)
    transport.clear()
    protocol.dataReceived(b"?get-tpi\n?version\n")
    protocol.readConnectionLost()
    assert not transport.disconnecting  # replies are still due
    clock.advance(SlowBackend.delay)
    assert lines(transport) == [b"!get-tpi,ok,1.0,2.0", b"!version,ok,1.4"]
    assert transport.disconnecting
    protocol.writeConnectionLost()


class Stuck(Handler):
    """Answers ``stuck`` never, anything else at once."""

    def __init__(self):
        self.pending: list[defer.Deferred] = []

    def handle(self, message):
        if message.name == "stuck":
            self.pending.append(defer.Deferred())
            return self.pending[-1]
        return ok(message.name)


def test_a_half_closed_connection_waits_linger_seconds_for_its_replies(clock, logged):
    handler = Stuck()
    protocol, transport, factory = connect(handler, clock, linger=30)
    transport.clear()
    protocol.dataReceived(b"?x\n?stuck\n?y\n")
    protocol.readConnectionLost()
    clock.advance(29.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting  # given up: the socket does not stay half-open
    assert lines(transport) == [b"!x,ok"]
    assert "it closed its side and 2 replies still due after 30 s" in " ".join(
        formatEvent(event) for event in logged)
    protocol.connectionLost(None)
    handler.pending[0].callback(ok("stuck"))  # too late: written nowhere, no error
    assert lines(transport) == [b"!x,ok"]
    assert protocol not in factory.connections


def test_a_half_closed_connection_closes_when_its_last_reply_comes(clock):
    handler = Stuck()
    protocol, transport, _ = connect(handler, clock, linger=30)
    protocol.dataReceived(b"?stuck\n")
    protocol.readConnectionLost()
    clock.advance(10)
    handler.pending[0].callback(ok("stuck"))
    assert transport.disconnecting
    assert lines(transport)[-1] == b"!stuck,ok"
    protocol.connectionLost(None)
    assert not clock.getDelayedCalls()  # the linger timer went with the connection


def test_a_half_closed_connection_closes_when_its_last_reply_times_out(clock):
    protocol, transport, _ = connect(Stuck(), clock, timeout=5, linger=30)
    protocol.dataReceived(b"?stuck\n")
    protocol.readConnectionLost()
    clock.advance(5)
    assert transport.disconnecting
    assert lines(transport)[-1] == b"!stuck,fail,timeout after 5 s"


def test_without_linger_a_half_closed_connection_waits_for_ever(clock):
    protocol, transport, _ = connect(Stuck(), clock, linger=None)
    protocol.dataReceived(b"?stuck\n")
    protocol.readConnectionLost()
    assert not clock.getDelayedCalls()
    assert not transport.disconnecting


def test_connections_are_logged_with_their_peer_and_exchanges_only_when_asked(clock, logged):
    quiet, transport, _ = connect(Stuck(), clock)
    quiet.dataReceived(b"?x\n")
    quiet.connectionLost(None)
    peer = "192.168.1.1:54321"  # StringTransport's
    assert [formatEvent(event) for event in logged] == [
        f"connection from {peer}", f"connection from {peer} closed"]
    assert all(event["peer"] == peer for event in logged)
    del logged[:]
    handler = Stuck()
    talkative, transport, _ = connect(handler, clock, log_requests=True, max_line=16)
    talkative.dataReceived(b"?stuck\n?x\n?long," + b"y" * 20 + b"\n")
    clock.advance(0.5)
    handler.pending[0].callback(ok("stuck"))
    exchanged = [(event["request"], event["reply"], event["duration_ms"])
                 for event in logged if "duration_ms" in event]
    assert exchanged == [("?x", "!x,ok", 0.0),
                         ("?long," + "y" * 20, "!long,invalid,line too long: over 16 bytes",
                          0.0),
                         ("?stuck", "!stuck,ok", 500.0)]  # logged when ready, not written
    assert lines(transport)[1:] == [b"!stuck,ok", b"!x,ok",
                                    b"!long,invalid,line too long: over 16 bytes"]


def test_half_close_with_nothing_pending_closes_at_once(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock)
    protocol.dataReceived(b"?x\n")
    protocol.readConnectionLost()
    assert transport.disconnecting
    assert lines(transport)[-1] == b"!x,ok"


@pytest.mark.parametrize("chunks, replies", [
    # mixed line ends in one chunk
    ([b"?a,1\r\n?b,2\n?c\r\n"], [b"!a,ok,1", b"!b,ok,2", b"!c,ok"]),
    # a CR inside a line is not a line end: the line is invalid
    ([b"?a\rb\r\n?c\n"], [b"!undefined,invalid,", b"!c,ok"]),
    # a CR that ends a chunk waits for its LF
    ([b"?a\r\n?b\r", b"\n?c\r\n"], [b"!a,ok", b"!b,ok", b"!c,ok"]),
    # ... and a CR that ends a chunk and is not followed by LF stays in the line
    ([b"?a\r\n?b\r", b"x\n"], [b"!a,ok", b"!undefined,invalid,"]),
    # a lone CR at the end of a line ending in LF is dropped, one only
    ([b"?a\r\r\n"], [b"!undefined,invalid,"]),
])
def test_line_ends_in_every_combination(clock, chunks, replies):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock)
    transport.clear()
    for chunk in chunks:
        protocol.dataReceived(chunk)
    answered = lines(transport)
    assert len(answered) == len(replies)
    for got, expected in zip(answered, replies):
        assert got.startswith(expected)


def test_an_overlong_line_among_short_ones_keeps_the_order(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock, max_line=16)
    transport.clear()
    protocol.dataReceived(b"?a\r\n?long," + b"x" * 20 + b"\r\n?b\r\n")
    assert lines(transport) == [b"!a,ok", b"!long,invalid,line too long: over 16 bytes",
                                b"!b,ok"]


class CountingTransport(StringTransport):
    """A StringTransport that counts its write calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


@pytest.mark.parametrize("later_delay", [0, 1, 2])  # ready at once, with, or after bye
def test_after_a_late_closing_reply_nothing_more_is_written(clock, later_delay):
    class Late(Handler):
        def handle(self, message):
            if message.name == "bye":
                return task.deferLater(clock, 1, RawReply, b"!bye,ok\r\n", True)
            if message.name == "after" and later_delay:
                return task.deferLater(clock, later_delay, ok, message.name)
            return ok(message.name)
    protocol, transport, _ = connect(Late(), clock)
    transport.clear()
    protocol.dataReceived(b"?bye\n?after\n")
    clock.advance(1)
    assert transport.value() == b"!bye,ok\r\n"
    assert transport.disconnecting
    clock.advance(1)
    assert transport.value() == b"!bye,ok\r\n"


def test_the_replies_to_one_packet_are_written_in_one_call(clock):
    factory = DBProtocolFactory(DBProtocolHandler(Backend(clock)), clock=clock)
    protocol = factory.buildProtocol(None)
    transport = CountingTransport()
    protocol.makeConnection(transport)
    assert transport.writes == 1  # the greeting
    protocol.dataReceived(b"?status\r\n?version\n?nope\ngarbage\n?status,1\n" * 20)
    assert transport.writes == 2
    assert len(lines(transport)) == 1 + 100
    protocol.dataReceived(b"?version\n?ver")  # a line and a half: one write again
    assert transport.writes == 3


def test_a_packet_that_answers_nothing_writes_nothing(clock):
    factory = DBProtocolFactory(AlwaysOkHandler(), clock=clock)
    protocol = factory.buildProtocol(None)
    transport = CountingTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"?partial,line")
    assert transport.writes == 1  # the greeting only


@pytest.mark.parametrize("chunks", [
    [b"?x," + b"a" * 97 + b"\r\n"],
    [b"?x," + b"a" * 97 + b"\r", b"\n"],
], ids=["one-packet", "cr-then-lf"])
def test_a_line_at_the_limit_plus_its_cr_is_accepted(clock, chunks):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock, max_line=100)
    transport.clear()
    assert len(chunks[0].rstrip(b"\r\n")) == 100
    for chunk in chunks:
        protocol.dataReceived(chunk)
    assert lines(transport) == [b"!x,ok," + b"a" * 97]


def test_a_line_one_over_the_limit_is_too_long_even_before_its_end(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock, max_line=100)
    transport.clear()
    protocol.dataReceived(b"?x," + b"a" * 98 + b"\r")  # 101 bytes and a CR: no LF needed
    assert lines(transport) == [b"!x,invalid,line too long: over 100 bytes"]
    protocol.dataReceived(b"\n?y\n")
    assert lines(transport) == [b"!x,invalid,line too long: over 100 bytes", b"!y,ok"]


# -- hardening: worst lines, backpressure, shutdown, admission, idle ------------------

def test_the_worst_lines_are_answered_at_once_and_briefly(clock):
    protocol, transport, _ = connect(DBProtocolHandler(Backend(clock)), clock)
    transport.clear()
    protocol.dataReceived(b"?get-tpi," + b"1" * 65_000 + b"x,0\r\n"
                          + b"?set-section,0,1." + b"1" * 65_000 + b"e,1,0,0,1,1\r\n"
                          + b"?start,1." + b"1" * 65_000 + b"x\r\n?status\r\n")
    replies = lines(transport)
    assert [reply[:24] for reply in replies] == [
        b"!get-tpi,fail,invalid fr", b"!set-section,fail,invali", b"!start,fail,invalid time",
        b"!status,ok,1700000000.00"]
    assert all(len(reply) < 512 for reply in replies)


def test_a_full_send_buffer_stops_reading_until_it_drains(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock)
    assert transport.producer is protocol  # the transport pauses us when full
    protocol.pauseProducing()
    assert transport.producerState == "paused"
    protocol.resumeProducing()
    assert transport.producerState == "producing"


def test_too_many_pending_replies_stop_reading_until_they_are_written(clock):
    protocol, transport, _ = connect(DBProtocolHandler(SlowBackend(clock)), clock,
                                     max_pending=10)
    transport.clear()
    protocol.dataReceived(b"?get-tpi\n" + b"?status\n" * 8)
    assert transport.producerState == "producing"  # 9 waiting: under the bound
    protocol.dataReceived(b"?status\n")
    assert transport.producerState == "paused"
    clock.advance(SlowBackend.delay)
    assert transport.producerState == "producing"
    assert len(lines(transport)) == 10


def test_reading_stays_paused_while_any_reason_holds(clock):
    protocol, transport, _ = connect(DBProtocolHandler(SlowBackend(clock)), clock,
                                     max_pending=4)
    protocol.dataReceived(b"?get-tpi\n?status\n?status\n?status\n")
    protocol.pauseProducing()  # and the send buffer is full
    clock.advance(SlowBackend.delay)  # the queue drains...
    assert transport.producerState == "paused"  # ...but the buffer is still full
    protocol.resumeProducing()
    assert transport.producerState == "producing"


def test_closing_answers_the_waiting_requests_shutting_down(clock):
    factory = DBProtocolFactory(DBProtocolHandler(SlowBackend(clock)), clock=clock)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    transport.clear()
    protocol.dataReceived(b"?get-tpi\n?status\n?get-rms\n")
    closed = factory.close_connections(grace=5)
    assert lines(transport) == [b"!get-tpi,fail,shutting down",
                                b"!status,ok,1700000000.0000000,ok,0",
                                b"!get-rms,fail,shutting down"]
    assert transport.disconnecting and not closed.called
    clock.advance(SlowBackend.delay)  # the late replies are dropped
    assert len(lines(transport)) == 3
    protocol.connectionLost(None)
    assert closed.called


def test_a_connection_that_does_not_read_is_dropped_after_the_grace(clock):
    factory = DBProtocolFactory(AlwaysOkHandler(), clock=clock)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    closed = factory.close_connections(grace=5)
    clock.advance(4.9)
    assert not transport.disconnected  # still flushing
    clock.advance(0.2)
    assert transport.disconnected  # abortConnection
    protocol.connectionLost(None)
    assert closed.called and not clock.getDelayedCalls()


def test_connections_over_the_cap_are_told_and_closed(clock):
    factory = DBProtocolFactory(AlwaysOkHandler(), clock=clock, max_connections=2)
    for _ in range(2):
        factory.buildProtocol(None).makeConnection(StringTransport())
    refused = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    transport = StringTransport()
    refused.makeConnection(transport)
    assert transport.value() == b"!undefined,fail,too many connections\r\n"
    assert transport.disconnecting


@pytest.mark.parametrize("host, served", [
    ("10.1.2.3", True), ("10.255.0.1", True), ("192.168.1.1", False),
    ("::ffff:10.1.2.3", True), ("fd00::1", True), ("fe80::1", False), ("nonsense", False),
])
def test_only_allowed_peers_are_served(clock, host, served):
    factory = DBProtocolFactory(AlwaysOkHandler(), clock=clock,
                                allow=["10.0.0.0/8", "fd00::/8"])
    kind = IPv6Address if ":" in host else IPv4Address
    built = factory.buildProtocol(kind("TCP", host, 5000))
    assert isinstance(built, DBProtocol) is served
    assert (built is None) is not served


def test_refusals_are_logged_at_most_once_a_minute(clock):
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        factory = DBProtocolFactory(AlwaysOkHandler(), clock=clock, allow=["10.0.0.0/8"])
        for _ in range(5):
            factory.buildProtocol(IPv4Address("TCP", "192.168.1.1", 5000))
        clock.advance(61)
        factory.buildProtocol(IPv4Address("TCP", "192.168.1.1", 5000))
    finally:
        globalLogPublisher.removeObserver(events.append)
    refusals = [event for event in events
                if "allow list" in event.get("log_format", "")]
    assert len(refusals) == 2
    assert "4 more" in refusals[1]["log_format"]


def test_an_idle_connection_is_closed_after_the_idle_timeout(clock):
    protocol, transport, _ = connect(AlwaysOkHandler(), clock, idle_timeout=30)
    clock.advance(20)
    protocol.dataReceived(b"?x\n")  # activity: the timer starts again
    clock.advance(20)
    assert not transport.disconnecting
    clock.advance(11)
    assert transport.disconnecting


def test_without_an_idle_timeout_a_connection_is_kept_for_days(clock):
    _, transport, _ = connect(AlwaysOkHandler(), clock)
    clock.advance(10 * 86_400)
    assert not transport.disconnecting and not clock.getDelayedCalls()
