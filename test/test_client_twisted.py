"""Tests for the Twisted client (discosbackend.client.protocol and .reconnecting).

The protocol logic (FIFO matching, desync, timeouts, connection loss,
reconnecting and re-reading the greeting) is driven with StringTransport
and task.Clock; one test runs the real client against a live server in a
subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from astropy.time import Time
from twisted.internet import defer, task
from twisted.internet.error import (ConnectingCancelledError, ConnectionDone,
                                    ConnectionRefusedError)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from discosbackend import timediscos
from discosbackend.client import (Address, CommandFailed, CommandInvalid, ConnectFailed,
                                  ConnectionLost, DBClientFactory, DBClientProtocol,
                                  ProtocolError, ReconnectingClient, RequestTimeout, Status,
                                  client_endpoint, connect)
from discosbackend.grammar import request

from serving import start_server

GREETING = b"!version,ok,1.4\r\n"


def result_of(deferred: defer.Deferred) -> Any:
    """The result a fired Deferred holds (re-raising a failure)."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def failure_of(deferred: defer.Deferred, kind: type[BaseException]) -> BaseException:
    """The exception a failed Deferred holds; it must be a ``kind``."""
    with pytest.raises(kind) as caught:
        result_of(deferred)
    return caught.value


def pending(deferred: defer.Deferred) -> bool:
    """Whether ``deferred`` has no result yet (its result, if any, is passed on)."""
    fired: list[bool] = []

    def seen(result: Any) -> Any:
        fired.append(True)
        return result
    deferred.addBoth(seen)
    return not fired


class Wire:
    """A DBClientProtocol on a StringTransport, with a Clock."""

    def __init__(self, timeout: float | None = None, greet: bool = True) -> None:
        self.clock = task.Clock()
        self.protocol = DBClientProtocol(timeout=timeout, clock=self.clock)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        if greet:
            self.feed(GREETING)

    def feed(self, data: bytes) -> None:
        """Bytes from the server."""
        self.protocol.dataReceived(data)

    def sent(self) -> bytes:
        """Bytes written by the client since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def lose(self) -> None:
        """The connection closes."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def wire() -> Wire:
    return Wire()


# --------------------------------------------------------------------------
# Greeting
# --------------------------------------------------------------------------

def test_greeting_gives_the_server_version() -> None:
    wire = Wire(greet=False)
    ready = wire.protocol.when_ready()
    assert pending(ready) and wire.protocol.server_version is None
    wire.feed(b"!version,ok,1.4\r")
    assert pending(ready)
    wire.feed(b"\n")
    assert result_of(ready) is wire.protocol
    assert wire.protocol.server_version == "1.4"
    assert str(wire.protocol.greeting) == "!version,ok,1.4"
    assert result_of(wire.protocol.when_ready()) is wire.protocol


def test_requests_before_the_greeting_are_answered_after_it() -> None:
    wire = Wire(greet=False)
    answer = wire.protocol.request("get-integration")
    assert wire.sent() == b"?get-integration\r\n"
    wire.feed(GREETING + b"!get-integration,ok,40\r\n")
    assert result_of(answer).arguments == ["40"]


@pytest.mark.parametrize("line", [b"!status,ok,1.0,ok,0", b"!version,fail,no", b"?version",
                                  b"hello there"])
def test_a_bad_greeting_drops_the_connection(line: bytes) -> None:
    wire = Wire(greet=False)
    ready = wire.protocol.when_ready()
    wire.feed(line + b"\r\n")
    assert "bad greeting" in str(failure_of(ready, ConnectFailed))
    assert wire.transport.disconnecting
    wire.lose()
    failure_of(wire.protocol.when_ready(), ConnectFailed)


def test_connection_closed_before_the_greeting() -> None:
    wire = Wire(greet=False)
    ready = wire.protocol.when_ready()
    cancelled = wire.protocol.when_ready()
    cancelled.cancel()
    wire.lose()
    assert "before the greeting" in str(failure_of(ready, ConnectFailed))
    failure_of(cancelled, defer.CancelledError)


# --------------------------------------------------------------------------
# Requests and typed helpers
# --------------------------------------------------------------------------

START = Time("2026-01-02T03:04:05.1234567", scale="utc", precision=7)
START_TICKS = timediscos.time_to_acs(START)

TYPED = [
    # (method, arguments, request sent, reply received, value expected)
    ("version", (), b"?version", b"!version,ok,1.4", "1.4"),
    ("get_configuration", (), b"?get-configuration", b"!get-configuration,ok,SK00", "SK00"),
    ("set_configuration", ("SK00",), b"?set-configuration,SK00", b"!set-configuration,ok",
     None),
    ("get_integration", (), b"?get-integration", b"!get-integration,ok,40", 40),
    ("set_integration", (40,), b"?set-integration,40", b"!set-integration,ok", None),
    ("get_tpi", (), b"?get-tpi", b"!get-tpi,ok,903.21,1240.57", [903.21, 1240.57]),
    ("get_tpi", (1400.5,), b"?get-tpi,1400.5,0", b"!get-tpi,ok,1e+06", [1e6]),
    ("get_tp0", (0, 300), b"?get-tp0,0,300", b"!get-tp0,ok,1500.000000,0", [1500.0, 0.0]),
    ("get_rms", (), b"?get-rms", b"!get-rms,ok", []),
    ("start", (), b"?start", b"!start,ok", None),
    ("start", (START,), b"?start,%d" % START_TICKS, b"!start,ok", None),
    ("stop", (1430922782.5,), b"?stop,14309227825000000", b"!stop,ok", None),
    ("set_section", (-1, 100, 1500.5, None, "CP", "*", 1024),
     b"?set-section,-1,100,1500.5,*,CP,*,1024", b"!set-section,ok", None),
    ("set_section", (2,), b"?set-section,2,*,*,*,*,*,*", b"!set-section,ok", None),
    ("cal_on", (), b"?cal-on", b"!cal-on,ok", None),
    ("cal_on", (10,), b"?cal-on,10", b"!cal-on,ok", None),
    ("set_filename", ("/data/a,b.fits",), b"?set-filename,/data/a\\,b.fits",
     b"!set-filename,ok", None),
    ("convert_data", (), b"?convert-data", b"!convert-data,ok,extra", None),
    ("set_enable", (1, 0), b"?set-enable,1,0", b"!set-enable,ok", None),
    ("end_schedule", (), b"?end-schedule", b"!end-schedule,ok", None),
    ("backend_park", (), b"?backend-park", b"!backend-park,ok", None),
    ("set_shift", (-3,), b"?set-shift,-3", b"!set-shift,ok", None),
    ("call", ("target-sweep", 10, True), b"?target-sweep,10,1", b"!target-sweep,ok,a,b",
     ["a", "b"]),
    ("call", ("get-integration",), b"?get-integration", b"!get-integration,ok,7", [7]),
]


@pytest.mark.parametrize("method, arguments, sent, received, expected", TYPED,
                         ids=[f"{case[0]}-{index}" for index, case in enumerate(TYPED)])
def test_typed_helpers(wire: Wire, method: str, arguments: tuple, sent: bytes,
                       received: bytes, expected: Any) -> None:
    answer = getattr(wire.protocol, method)(*arguments)
    assert wire.sent() == sent + b"\r\n"
    wire.feed(received + b"\r\n")
    assert result_of(answer) == expected


def test_status_and_time_are_astropy_times(wire: Wire) -> None:
    status = wire.protocol.status()
    clock = wire.protocol.time()
    wire.feed(b"!status,ok,1763679223.1234567,ok,1\r\n!time,ok,1763679224.0000001\r\n")
    value = result_of(status)
    assert isinstance(value, Status)
    assert timediscos.time_to_acs(value.timestamp) == 17636792231234567
    assert value.status == "ok" and value.acquiring is True
    assert timediscos.time_to_acs(result_of(clock)) == 17636792240000001


def test_request_formats_arguments_and_returns_the_message(wire: Wire) -> None:
    answer = wire.protocol.request("set-section", 1, 50.0, "*", False, "CP", 10, 2048)
    assert wire.sent() == b"?set-section,1,50.0,*,0,CP,10,2048\r\n"
    wire.feed(b"!set-section,ok\n")  # a bare LF is fine too
    reply = result_of(answer)
    assert reply.name == "set-section" and reply.code == "ok"


def test_bad_arguments_raise_before_sending(wire: Wire) -> None:
    with pytest.raises(ValueError):
        wire.protocol.request("bad name")
    with pytest.raises(ValueError):
        wire.protocol.set_filename("a\nb")
    with pytest.raises(TypeError):
        wire.protocol.start(at="soon")
    with pytest.raises(ValueError):
        wire.protocol.send_request(request("status").__class__("!", "status", "ok"))
    assert wire.sent() == b""
    assert wire.protocol.pending == 0


@pytest.mark.parametrize("line, error, reason", [
    (b"!set-configuration,fail,unknown configuration 'x'", CommandFailed,
     "unknown configuration 'x'"),
    (b"!set-configuration,invalid,no such thing", CommandInvalid, "no such thing"),
    (b"!set-configuration,fail", CommandFailed, ""),
    (b"!undefined,invalid,line too long", CommandInvalid, "line too long"),
])
def test_fail_and_invalid_become_errors(wire: Wire, line: bytes, error: type,
                                        reason: str) -> None:
    answer = wire.protocol.set_configuration("x")
    wire.feed(line + b"\r\n")
    raised = failure_of(answer, error)
    assert raised.reason == reason
    assert str(raised.reply) == line.decode()
    assert str(raised.request) == "?set-configuration,x"
    assert reason in str(raised)
    # The connection stays usable.
    assert not wire.transport.disconnecting
    again = wire.protocol.get_configuration()
    wire.feed(b"!get-configuration,ok,x\r\n")
    assert result_of(again) == "x"


def test_a_reply_that_does_not_fit_the_command_fails_only_that_request(wire: Wire) -> None:
    answer = wire.protocol.get_tpi()
    wire.feed(b"!get-tpi,ok,1.0,nan\r\n")
    assert "bad reply" in str(failure_of(answer, ProtocolError))
    assert not wire.transport.disconnecting


# --------------------------------------------------------------------------
# Pipelining and desynchronisation
# --------------------------------------------------------------------------

def test_pipelined_requests_are_matched_in_order(wire: Wire) -> None:
    answers = [wire.protocol.get_integration(), wire.protocol.get_tpi(),
               wire.protocol.set_configuration("bad"), wire.protocol.get_configuration()]
    assert wire.sent() == (b"?get-integration\r\n?get-tpi\r\n?set-configuration,bad\r\n"
                           b"?get-configuration\r\n")
    assert wire.protocol.pending == 4
    wire.feed(b"!get-integration,ok,40\r\n!get-tpi,ok,1,2\r\n!set-configuration,fa")
    assert result_of(answers[0]) == 40
    assert result_of(answers[1]) == [1.0, 2.0]
    assert pending(answers[2])
    wire.feed(b"il,nope\r\n!get-configuration,ok,SK00\r\n")
    failure_of(answers[2], CommandFailed)
    assert result_of(answers[3]) == "SK00"
    assert wire.protocol.pending == 0


def test_a_reply_to_another_request_drops_the_connection(wire: Wire) -> None:
    first = wire.protocol.status()
    second = wire.protocol.get_tpi()
    wire.feed(b"!get-tpi,ok,1\r\n!status,ok,1.0000000,ok,0\r\n")
    assert "does not answer '?status'" in str(failure_of(first, ProtocolError))
    assert wire.transport.disconnecting
    assert pending(second)  # until the connection is closed
    late = wire.protocol.get_rms()
    assert "protocol error" in str(failure_of(late, ConnectionLost))
    wire.lose()
    assert "after a protocol error" in str(failure_of(second, ConnectionLost))


@pytest.mark.parametrize("line, words", [
    (b"this is no reply", "unreadable line"),
    (b"?status", "sent a request"),
    (b"!status,maybe", "unreadable line"),
])
def test_an_unreadable_line_drops_the_connection(wire: Wire, line: bytes, words: str) -> None:
    answer = wire.protocol.status()
    wire.feed(line + b"\r\n")
    assert words in str(failure_of(answer, ProtocolError))
    assert wire.transport.disconnecting


def test_a_reply_nobody_asked_for_drops_the_connection(wire: Wire) -> None:
    wire.feed(b"!status,ok,1.0000000,ok,0\r\n")
    assert wire.transport.disconnecting
    assert not wire.protocol.is_open


def test_a_line_too_long_drops_the_connection(wire: Wire, monkeypatch: Any) -> None:
    monkeypatch.setattr(DBClientProtocol, "MAX_LENGTH", 64)
    answer = wire.protocol.status()
    wire.feed(b"!status,ok," + b"x" * 100)
    assert "longer than 64" in str(failure_of(answer, ProtocolError))
    assert wire.transport.disconnecting


# --------------------------------------------------------------------------
# Connection loss
# --------------------------------------------------------------------------

def test_connection_loss_fails_every_pending_request(wire: Wire) -> None:
    answers = [wire.protocol.status(), wire.protocol.get_tpi(), wire.protocol.get_rms()]
    closed = wire.protocol.when_closed()
    assert pending(closed)
    wire.lose()
    for answer in answers:
        assert "connection lost" in str(failure_of(answer, ConnectionLost))
    assert result_of(closed) is None
    assert result_of(wire.protocol.when_closed()) is None
    assert "not connected" in str(failure_of(wire.protocol.status(), ConnectionLost))


def test_close(wire: Wire) -> None:
    closing = wire.protocol.close()
    assert wire.transport.disconnecting and pending(closing)
    assert "closing" in str(failure_of(wire.protocol.status(), ConnectionLost))
    wire.lose()
    assert result_of(closing) is None
    assert result_of(wire.protocol.close()) is None


# --------------------------------------------------------------------------
# Timeouts
# --------------------------------------------------------------------------

def test_a_timed_out_request_keeps_its_place() -> None:
    wire = Wire(timeout=5.0)
    slow = wire.protocol.get_integration()
    wire.clock.advance(4.9)
    assert pending(slow)
    wire.clock.advance(0.1)
    assert "no reply within 5 s" in str(failure_of(slow, RequestTimeout))
    assert wire.protocol.pending == 1
    after = wire.protocol.get_configuration()
    # The late reply is read and thrown away; the next one is matched.
    wire.feed(b"!get-integration,ok,40\r\n")
    assert pending(after) and wire.protocol.pending == 1
    wire.feed(b"!get-configuration,ok,SK00\r\n")
    assert result_of(after) == "SK00"
    assert not wire.transport.disconnecting


def test_per_request_timeout_and_cancel(wire: Wire) -> None:
    timed = wire.protocol.request("slow", 10, timeout=1.0)
    cancelled = wire.protocol.request("get-rms")
    untimed = wire.protocol.request("get-tpi")
    cancelled.cancel()
    failure_of(cancelled, defer.CancelledError)
    wire.clock.advance(1.0)
    failure_of(timed, RequestTimeout)
    wire.clock.advance(1000)
    assert pending(untimed)
    wire.feed(b"!slow,ok,done\r\n!get-rms,ok,1\r\n!get-tpi,ok,2\r\n")
    assert result_of(untimed).arguments == ["2"]
    wire.lose()  # nothing left to fail


def test_a_reply_in_time_cancels_the_timer() -> None:
    wire = Wire(timeout=5.0)
    answer = wire.protocol.get_integration()
    wire.feed(b"!get-integration,ok,1\r\n")
    wire.clock.advance(10)
    assert result_of(answer) == 1
    assert not wire.clock.getDelayedCalls()


# --------------------------------------------------------------------------
# connect() and endpoints
# --------------------------------------------------------------------------

@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Connects factories to StringTransports; can refuse."""

    def __init__(self) -> None:
        self.connections: list[tuple[Any, StringTransport]] = []
        self.refuse = False

    def connect(self, factory: Any) -> defer.Deferred:
        if self.refuse:
            return defer.fail(ConnectionRefusedError("nobody there"))
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return defer.succeed(protocol)

    def feed(self, data: bytes, index: int = -1) -> None:
        self.connections[index][0].dataReceived(data)

    def sent(self, index: int = -1) -> bytes:
        transport = self.connections[index][1]
        data = transport.value()
        transport.clear()
        return data

    def lose(self, index: int = -1) -> None:
        self.connections[index][0].connectionLost(Failure(ConnectionDone()))


def test_connect_fires_after_the_greeting() -> None:
    clock, endpoint = task.Clock(), FakeEndpoint()
    connecting = connect(endpoint, timeout=2.0, reactor=clock)
    assert pending(connecting)
    endpoint.feed(GREETING)
    client = result_of(connecting)
    assert isinstance(client, DBClientProtocol)
    assert client.server_version == "1.4" and client.timeout == 2.0
    assert isinstance(client.factory, DBClientFactory)
    assert not clock.getDelayedCalls()


def test_the_server_version_is_the_one_the_greeting_announces() -> None:
    clock, endpoint = task.Clock(), FakeEndpoint()
    connecting = connect(endpoint, reactor=clock)
    endpoint.feed(b"!version,ok,1.2\r\n")
    assert result_of(connecting).server_version == "1.2"


def test_connect_without_a_greeting_times_out() -> None:
    clock, endpoint = task.Clock(), FakeEndpoint()
    connecting = connect(endpoint, connect_timeout=3.0, reactor=clock)
    clock.advance(3.0)
    assert "no greeting" in str(failure_of(connecting, ConnectFailed))
    assert endpoint.connections[0][1].disconnected


def test_connect_to_nobody() -> None:
    endpoint = FakeEndpoint()
    endpoint.refuse = True
    raised = failure_of(connect(endpoint, reactor=task.Clock()), ConnectFailed)
    assert str(raised).startswith("cannot connect to ")
    assert str(raised).endswith(": Connection refused")  # the wording every client uses


def test_connect_to_a_server_with_a_bad_greeting() -> None:
    endpoint = FakeEndpoint()
    connecting = connect(endpoint, connect_timeout=None, reactor=task.Clock())
    endpoint.feed(b"SSH-2.0-OpenSSH\r\n")
    failure_of(connecting, ConnectFailed)
    assert endpoint.connections[0][1].disconnecting


def test_client_endpoints() -> None:
    reactor = MemoryReactorClock()
    assert type(client_endpoint("backend:8978", reactor)).__name__ == "HostnameEndpoint"
    assert type(client_endpoint("[::1]:8978", reactor)).__name__ == "HostnameEndpoint"
    assert type(client_endpoint("unix:path=/tmp/x.sock", reactor)).__name__ \
        == "UNIXClientEndpoint"
    assert type(client_endpoint("tcp:host=h:port=1", reactor)).__name__ \
        == "TCP4ClientEndpoint"
    assert type(client_endpoint(Address(host="h", port=2), reactor)).__name__ \
        == "HostnameEndpoint"
    endpoint = FakeEndpoint()
    assert client_endpoint(endpoint, reactor) is endpoint
    with pytest.raises(ValueError):
        client_endpoint("host:port", reactor)
    with pytest.raises(TypeError):
        client_endpoint(8978, reactor)  # type: ignore[arg-type]


def test_cancelling_connect() -> None:
    connecting = connect("127.0.0.1:8978", reactor=MemoryReactorClock())
    assert pending(connecting)
    connecting.cancel()
    failure_of(connecting, ConnectingCancelledError)
    endpoint = FakeEndpoint()
    connecting = connect(endpoint, reactor=task.Clock())
    connecting.cancel()  # while waiting for the greeting
    failure_of(connecting, defer.CancelledError)
    assert endpoint.connections[0][1].disconnected


def test_the_reactor_is_the_default_clock() -> None:
    from twisted.internet import reactor
    assert DBClientProtocol().clock is reactor
    assert type(client_endpoint("backend:8978")).__name__ == "HostnameEndpoint"


# --------------------------------------------------------------------------
# ReconnectingClient
# --------------------------------------------------------------------------

class Reconnecting:
    """A ReconnectingClient on a FakeEndpoint and a Clock, no jitter."""

    def __init__(self, **options: Any) -> None:
        self.clock = task.Clock()
        self.endpoint = FakeEndpoint()
        self.client = ReconnectingClient(self.endpoint, reactor=self.clock,
                                         jitter=lambda: 0.0, initial_delay=1.0, factor=2.0,
                                         **options)


def test_reconnecting_client_waits_for_the_greeting_and_reconnects() -> None:
    fake = Reconnecting()
    client = fake.client
    client.open()
    assert len(fake.endpoint.connections) == 1
    early = client.get_integration()
    assert fake.endpoint.sent() == b""  # not before the greeting
    assert client.server_version is None and client.protocol is None
    fake.endpoint.feed(GREETING)
    assert fake.endpoint.sent() == b"?get-integration\r\n"
    assert client.server_version == "1.4" and client.connections == 1
    fake.endpoint.feed(b"!get-integration,ok,40\r\n")
    assert result_of(early) == 40
    connected = client.when_connected()
    assert result_of(connected) is client.protocol

    # The connection drops with a request pending: it fails, it is not resent.
    lost = client.status()
    fake.endpoint.lose()
    failure_of(lost, ConnectionLost)
    assert client.protocol is None and client.server_version is None
    waiting = [client.get_tpi(), client.request("get-rms")]
    fake.clock.advance(1.9)
    assert len(fake.endpoint.connections) == 1
    fake.clock.advance(0.1)  # the first retry: initial_delay * factor
    assert len(fake.endpoint.connections) == 2
    assert fake.endpoint.sent() == b""
    fake.endpoint.feed(b"!version,ok,1.5\r\n")
    assert client.server_version == "1.5" and client.connections == 2
    assert fake.endpoint.sent() == b"?get-tpi\r\n?get-rms\r\n"
    fake.endpoint.feed(b"!get-tpi,ok,1\r\n!get-rms,ok,2\r\n")
    assert result_of(waiting[0]) == [1.0]
    assert result_of(waiting[1]).arguments == ["2"]

    closing = client.close()
    fake.endpoint.lose()
    assert result_of(closing) is None
    assert "not connected" in str(failure_of(client.status(), ConnectionLost))


def test_reconnecting_client_retries_with_backoff() -> None:
    fake = Reconnecting(max_delay=5.0)
    fake.endpoint.refuse = True
    fake.client.open()
    delays = []
    for _ in range(5):
        calls = fake.clock.getDelayedCalls()
        assert len(calls) == 1
        delays.append(calls[0].getTime() - fake.clock.seconds())
        fake.clock.advance(delays[-1])
    assert delays == [2.0, 4.0, 5.0, 5.0, 5.0]
    fake.endpoint.refuse = False
    fake.clock.advance(5.0)
    fake.endpoint.feed(GREETING)
    assert fake.client.connections == 1
    closing = fake.client.close()
    fake.endpoint.lose()
    result_of(closing)


def test_reconnecting_client_drops_a_connection_with_a_bad_or_missing_greeting() -> None:
    fake = Reconnecting(connect_timeout=2.0)
    fake.client.open()
    fake.endpoint.feed(b"!version,fail,busy\r\n")
    assert fake.endpoint.connections[0][1].disconnecting
    fake.endpoint.lose()
    fake.clock.advance(2.0)
    assert len(fake.endpoint.connections) == 2
    fake.clock.advance(2.0)  # no greeting in time
    assert fake.endpoint.connections[1][1].disconnected
    fake.endpoint.lose()
    fake.clock.advance(4.0)
    assert len(fake.endpoint.connections) == 3
    fake.endpoint.feed(GREETING)
    assert fake.client.connections == 1 and fake.client.server_version == "1.4"
    closing = fake.client.close()
    fake.endpoint.lose()
    result_of(closing)


def test_reconnecting_client_without_waiting_fails_fast() -> None:
    fake = Reconnecting(wait=False)
    fake.client.open()
    assert "not connected" in str(failure_of(fake.client.status(), ConnectionLost))
    fake.endpoint.feed(GREETING)
    answer = fake.client.status()
    assert fake.endpoint.sent() == b"?status\r\n"
    fake.endpoint.feed(b"!status,ok,1763679223.1234567,fine,0\r\n")
    assert result_of(answer).status == "fine"
    fake.endpoint.lose()
    failure_of(fake.client.get_tpi(), ConnectionLost)
    result_of(fake.client.close())


def test_reconnecting_client_timeout_covers_the_wait() -> None:
    fake = Reconnecting(timeout=3.0, connect_timeout=None)
    fake.client.open()
    waiting = fake.client.status()
    fake.clock.advance(3.0)
    failure_of(waiting, RequestTimeout)
    fake.endpoint.feed(GREETING)
    assert fake.endpoint.sent() == b""  # the timed-out request was never sent
    sent = fake.client.get_rms()
    assert fake.endpoint.sent() == b"?get-rms\r\n"
    fake.clock.advance(3.0)
    failure_of(sent, RequestTimeout)
    assert fake.client.protocol.pending == 1  # its place is kept
    fake.endpoint.feed(b"!get-rms,ok\r\n")
    assert fake.client.protocol.pending == 0
    with pytest.raises(ValueError):
        fake.client.send_request(request("status").__class__("!", "status", "ok"))


def test_reconnecting_client_close_fails_waiting_requests() -> None:
    fake = Reconnecting()
    fake.endpoint.refuse = True
    fake.client.open()
    waiting = fake.client.status()
    result_of(fake.client.close())
    assert "closed" in str(failure_of(waiting, ConnectionLost))
    assert "closed" in str(failure_of(fake.client.when_connected(), ConnectionLost))


# --------------------------------------------------------------------------
# End to end, against a live server
# --------------------------------------------------------------------------

LIVE_SCRIPT = r"""
import json, sys
from twisted.internet import defer, task
from discosbackend.client import (CommandFailed, CommandInvalid, ReconnectingClient,
                                  RequestTimeout, connect)

async def main(reactor, address):
    out = {}
    client = await connect(address, timeout=5)
    out["version"] = client.server_version
    status = await client.status()
    out["status"] = [status.timestamp.isot, status.status, status.acquiring]
    answers = [client.get_integration(), client.set_integration(40), client.get_integration(),
               client.get_tpi(), client.call("slow", 0.05), client.get_rms()]
    out["pipelined"] = await defer.gatherResults(answers)
    try:
        await client.set_configuration("bad")
    except CommandFailed as error:
        out["fail"] = error.reason
    try:
        await client.request("no-such-command")
    except CommandInvalid as error:
        out["invalid"] = error.reason
    try:
        await client.request("slow", 10, timeout=0.05)
    except RequestTimeout as error:
        out["timeout"] = str(error)
    await client.close()

    again = ReconnectingClient(address, jitter=lambda: 0.0, initial_delay=0.05)
    again.open()
    out["first"] = await again.get_rms()
    try:
        await again.request("hang-up")
    except Exception as error:
        out["hang-up"] = type(error).__name__
    out["after"] = await again.get_tpi()
    out["connections"] = again.connections
    out["reconnected_version"] = again.server_version
    await again.close()
    print(json.dumps(out))

address = sys.stdin.readline().strip()  # sent once the server listens
task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, address)))
"""


def test_against_a_live_server() -> None:
    # The script starts (imports) while the server starts; then it gets the address.
    script = subprocess.Popen([sys.executable, "-c", LIVE_SCRIPT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with start_server() as server:
        stdout, stderr = script.communicate(server.address + "\n", timeout=60)
    assert script.returncode == 0, stderr
    out = json.loads(stdout)
    assert out["version"] == "1.4"
    assert out["status"][1:] == ["ok", False]
    assert out["pipelined"] == [0, None, 40, [903.21, 1240.57], ["done"], [0.125, 0.25]]
    assert out["fail"] == "unknown configuration 'bad'"
    assert out["invalid"] == "unknown command 'no-such-command'"
    assert "no reply within 0.05 s" in out["timeout"]
    assert out["first"] == [0.125, 0.25]
    assert out["hang-up"] == "ConnectionLost"
    assert out["after"] == [903.21, 1240.57]
    assert out["connections"] == 2
    assert out["reconnected_version"] == "1.4"
