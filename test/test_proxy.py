"""The proxy on real loopback sockets: bytes through unchanged, problems flagged, lines recorded.

The backend is served behind a tap that keeps every byte it receives and
sends, so each test can compare both ends of the proxy byte for byte.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHalfCloseableProtocol, IListeningPort
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import implementer

from discosbackend import proxy, server
from discosbackend.handlers import DBProtocolHandler, Handler
from discosbackend.protocol import DBProtocolFactory
from discosbackend.proxy import Problem, ProxyFactory
from discosbackend.simulator import BackendSimulator, SimulatorHandler
from discosbackend.testing.replay import replay_file
from discosbackend.transcript import CLIENT, CLOSE, OPEN, SERVER, TranscriptWriter, read_transcript

from broken_backends import Scripted
from serving import closed_port

WAIT = 10  # seconds: a bound on every wait, never reached when all is well


@implementer(IHalfCloseableProtocol)
class _Tapped(ProtocolWrapper):
    factory: Tap

    def dataReceived(self, data: bytes) -> None:
        self.factory.received += data
        self.factory.poke()
        super().dataReceived(data)

    def write(self, data: bytes) -> None:
        self.factory.sent += data
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    # ProtocolWrapper does not pass half-closes on: the server's protocol
    # must see the client's, as it would without the tap.
    def readConnectionLost(self) -> None:
        self.wrappedProtocol.readConnectionLost()

    def writeConnectionLost(self) -> None:
        self.wrappedProtocol.writeConnectionLost()


class Tap(WrappingFactory):
    """A server factory whose bytes in and out are all kept."""

    protocol = _Tapped

    def __init__(self, handler: Handler) -> None:
        super().__init__(DBProtocolFactory(handler))
        self.received = b""
        self.sent = b""
        self._waiting: list[tuple[int, defer.Deferred[None]]] = []

    def poke(self) -> None:
        for count, waiter in list(self._waiting):
            if len(self.received) >= count:
                self._waiting.remove((count, waiter))
                waiter.callback(None)

    def has_received(self, count: int) -> defer.Deferred[None]:
        """Fires once ``count`` bytes in all have come in."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((count, waiter))
        self.poke()
        return waiter.addTimeout(WAIT, reactor)


class Client(Protocol):
    """Keeps what it receives; ``lines(n)`` fires once ``n`` lines are in."""

    def __init__(self) -> None:
        self.data = b""
        self.written = b""
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._waiting: list[tuple[int, defer.Deferred[list[bytes]]]] = []

    def send(self, data: bytes) -> None:
        self.written += data
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for count, waiter in list(self._waiting):
            if self.data.count(b"\n") >= count:
                self._waiting.remove((count, waiter))
                waiter.callback(self.data.splitlines(keepends=True)[:count])

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)

    def lines(self, count: int) -> defer.Deferred[list[bytes]]:
        waiter: defer.Deferred[list[bytes]] = defer.Deferred()
        self._waiting.append((count, waiter))
        self.dataReceived(b"")
        return waiter.addTimeout(WAIT, reactor)


class Setup:
    """A tapped backend, a proxy in front of it recording to memory, and the problems seen."""

    def __init__(self, backend: IListeningPort, tap: Tap, front: IListeningPort,
                 record: io.StringIO, problems: list[Problem]) -> None:
        self.backend, self.tap, self.front = backend, tap, front
        self.record, self.problems = record, problems

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.getvalue().splitlines()]

    def connect(self) -> defer.Deferred[Client]:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.front.getHost().port)
        return connectProtocol(endpoint, Client())

    def stop(self) -> defer.Deferred[Any]:
        stopping = server.stop(self.front)
        stopping.addCallback(lambda _: self.tap.wrappedFactory.close_connections())
        return stopping.addCallback(lambda _: self.backend.stopListening())


@pytest_twisted.inlineCallbacks
def start(handler: Handler | None = None) -> Any:
    tap = Tap(handler if handler is not None else SimulatorHandler(BackendSimulator()))
    backend = reactor.listenTCP(0, tap, interface="127.0.0.1")
    record, problems = io.StringIO(), []
    front = yield proxy.listen(0, f"127.0.0.1:{backend.getHost().port}", interface="127.0.0.1",
                               recorder=TranscriptWriter(record), on_problem=problems.append)
    return Setup(backend, tap, front, record, problems)


@pytest_twisted.inlineCallbacks
def test_a_session_arrives_byte_for_byte_on_both_sides_pipelined_and_split() -> None:
    setup = yield start()
    try:
        client = yield setup.connect()
        yield client.lines(1)
        client.send(b"?status\r\n?get-tpi,0,0\n?version\r\n")     # pipelined, one write
        yield setup.tap.has_received(len(client.written))
        client.send(b"?get-conf")                                  # one line in three packets
        yield setup.tap.has_received(len(client.written))
        client.send(b"iguration\r\n?cal-on,1")
        yield setup.tap.has_received(len(client.written))
        client.send(b"0\r\n")
        lines = yield client.lines(6)
        client.transport.loseConnection()
        yield client.lost
    finally:
        yield setup.stop()
    assert setup.tap.received == client.written
    assert setup.tap.sent == client.data
    assert [line.split(b",")[0] for line in lines] == [
        b"!version", b"!status", b"!get-tpi", b"!version", b"!get-configuration", b"!cal-on"]
    assert setup.problems == []


@pytest_twisted.inlineCallbacks
def test_the_transcript_records_every_line_with_its_connection_and_direction() -> None:
    setup = yield start()
    try:
        first = yield setup.connect()
        yield first.lines(1)
        second = yield setup.connect()
        yield second.lines(1)
        first.send(b"?status\r\n?get-tpi")
        yield setup.tap.has_received(len(first.written))
        second.send(b"?time\n")
        yield second.lines(2)
        first.send(b",0,0\r\n")
        yield first.lines(3)
        for client in (first, second):
            client.transport.loseConnection()
            yield client.lost
    finally:
        yield setup.stop()
    records = setup.records()
    events = [(record["connection"], record["event"]) for record in records if "event" in record]
    assert events[:2] == [(1, OPEN), (2, OPEN)]
    assert sorted(events[2:]) == [(1, CLOSE), (2, CLOSE)]
    for number, client in ((1, first), (2, second)):
        lines = [record for record in records
                 if record["connection"] == number and "from" in record]
        sent = read_lines(lines, CLIENT)
        assert b"".join(sent) == client.written and all(line.endswith(b"\n") for line in sent)
        assert b"".join(read_lines(lines, SERVER)) == client.data
    assert [record["text"] for record in records if record.get("from") == CLIENT] == [
        "?status\r\n", "?time\n", "?get-tpi,0,0\r\n"]
    assert all(records[i]["time_us"] <= records[i + 1]["time_us"]
               for i in range(len(records) - 1))


def read_lines(records: list[dict[str, Any]], sender: str) -> list[bytes]:
    return [base64.b64decode(record["base64"]) for record in records if record["from"] == sender]


@pytest_twisted.inlineCallbacks
def test_a_non_conformant_backends_replies_are_flagged_in_the_log() -> None:
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    broken = Scripted(status=b"!status,ok,12,ok\r\n", set_enable=b"!set-enable,fail,busy\n",
                      get_tpi=b"!time,ok\r\n")
    setup = yield start(broken)
    try:
        client = yield setup.connect()
        client.send(b"?status\r\n?set-enable,0,0\r\n?get-tpi\r\n?get-rms\r\n")
        yield client.lines(5)
        client.transport.loseConnection()
        yield client.lost
    finally:
        globalLogPublisher.removeObserver(logged.append)
        yield setup.stop()
    assert [(problem.connection, problem.sender, problem.text, problem.request)
            for problem in setup.problems] == [
        (1, SERVER, "not the table's !status,ok reply: 3 values (timestamp status acquiring), "
                    "not 2", b"?status\r\n"),
        (1, SERVER, "ends in a bare LF, not CR LF: the real client loses its last character",
         b"?set-enable,0,0\r\n"),
        (1, SERVER, "fail to set-enable: the real client does not handle it, the DISCOS "
                    "component ends (std::terminate)", b"?set-enable,0,0\r\n"),
        (1, SERVER, "answers 'time', not the request 'get-tpi'", b"?get-tpi\r\n"),
    ]
    assert str(setup.problems[0]) == (
        "connection 1, server: not the table's !status,ok reply: 3 values (timestamp status "
        "acquiring), not 2\n    request: ?status\n    reply:   !status,ok,12,ok")
    warnings = [str(event["problem"]) for event in logged
                if event.get("log_namespace") == "discosbackend.proxy"
                and event["log_level"].name == "warn"]
    assert warnings == [str(problem) for problem in setup.problems]


@pytest_twisted.inlineCallbacks
def test_the_clients_bad_lines_and_a_cut_last_line_are_flagged_and_recorded() -> None:
    setup = yield start()
    try:
        client = yield setup.connect()
        yield client.lines(1)
        client.send(b"hello\r\n?set-section,1\r\n")
        yield client.lines(3)
        client.send(b"?status")  # no line end: the server never answers it
        yield setup.tap.has_received(len(client.written))
        client.transport.loseConnection()
        yield client.lost
    finally:
        yield setup.stop()
    assert [(problem.sender, problem.text.split(" (")[0]) for problem in setup.problems] == [
        (CLIENT, "does not parse"), (CLIENT, "bad arguments"),
        (CLIENT, "the connection closed with 1 request unanswered")]
    assert setup.records()[-2]["text"] == "?status"


@pytest_twisted.inlineCallbacks
def test_a_client_that_half_closes_still_gets_every_reply() -> None:
    setup = yield start()
    try:
        client = yield setup.connect()
        client.send(b"?set-integration,40\r\n?get-integration\r\n")
        client.transport.loseWriteConnection()
        yield client.lost  # the backend closes once it has answered; the proxy follows
    finally:
        yield setup.stop()
    assert client.data == (b"!version,ok,1.4\r\n!set-integration,ok\r\n"
                           b"!get-integration,ok,40\r\n")


@pytest_twisted.inlineCallbacks
def test_a_backend_that_hangs_up_closes_the_client_after_its_reply() -> None:
    simulator = BackendSimulator()
    simulator.faults.close_after_next()
    setup = yield start(SimulatorHandler(simulator))
    try:
        client = yield setup.connect()
        client.send(b"?get-integration\r\n")
        yield client.lost
    finally:
        yield setup.stop()
    assert client.data == b"!version,ok,1.4\r\n!get-integration,ok,0\r\n"
    assert setup.records()[-1]["event"] == CLOSE


@pytest_twisted.inlineCallbacks
def test_a_backend_that_hangs_up_on_pending_requests_is_blamed() -> None:
    simulator = BackendSimulator()
    simulator.faults.close_after_next()
    setup = yield start(SimulatorHandler(simulator))
    try:
        client = yield setup.connect()
        client.send(b"?time\r\n?status\r\n")  # the second is never answered
        yield client.lost
    finally:
        yield setup.stop()
    assert [(problem.sender, problem.text) for problem in setup.problems] == [
        (SERVER, "the connection closed with 1 request unanswered")]


@pytest_twisted.inlineCallbacks
def test_stopping_the_proxy_closes_the_client_and_the_backends_connection() -> None:
    setup = yield start()
    client = yield setup.connect()
    yield client.lines(1)
    yield server.stop(setup.front)
    yield client.lost
    assert setup.front.factory.connections == set()
    yield setup.tap.wrappedFactory.close_connections()
    yield setup.backend.stopListening()
    assert setup.records()[-1]["event"] == CLOSE


@pytest_twisted.inlineCallbacks
def test_an_unreachable_backend_closes_the_client_and_says_why() -> None:
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    front = yield proxy.listen(0, f"127.0.0.1:{closed_port()}", interface="127.0.0.1")
    try:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", front.getHost().port)
        client = yield connectProtocol(endpoint, Client())
        client.send(b"?status\r\n")
        yield client.lost
    finally:
        globalLogPublisher.removeObserver(logged.append)
        yield server.stop(front)
    assert client.data == b""
    errors = [event for event in logged if event["log_level"].name == "error"
              and event.get("log_namespace") == "discosbackend.proxy"]
    assert len(errors) == 1 and "refused" in errors[0]["reason"].lower()


@pytest_twisted.inlineCallbacks
def test_a_recording_replays_against_the_same_backend_and_not_against_a_broken_one(
        tmp_path: Any) -> None:
    path = tmp_path / "session.jsonl"
    recorder = TranscriptWriter.open(path)
    tap = Tap(SimulatorHandler(BackendSimulator()))
    backend = reactor.listenTCP(0, tap, interface="127.0.0.1")
    front = yield proxy.listen(0, f"127.0.0.1:{backend.getHost().port}",
                               interface="127.0.0.1", recorder=recorder)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", front.getHost().port)
    client = yield connectProtocol(endpoint, Client())
    client.send(b"?set-configuration,SK00\r\n?set-enable,1,2\r\n?get-tpi,0,0\r\n"
                b"?get-configuration\r\n?status\r\n")
    yield client.lines(6)
    client.transport.loseConnection()
    yield client.lost
    yield server.stop(front)
    yield tap.wrappedFactory.close_connections()
    yield backend.stopListening()
    recorder.close()
    assert len(read_transcript(path)) == 13

    same = yield server.listen(0, SimulatorHandler(BackendSimulator()), interface="127.0.0.1")
    older = yield server.listen(0, DBProtocolHandler(BackendSimulator(), protocol="1.2"),
                                interface="127.0.0.1")
    try:
        matching = yield replay_file(path, ("127.0.0.1", same.getHost().port))
        differing = yield replay_file(path, ("127.0.0.1", older.getHost().port))
    finally:
        yield server.stop(same)
        yield server.stop(older)
    assert matching.matches and matching.compared == 6
    assert [str(difference) for difference in differing.differences[:2]] == [
        "the greeting\n    recorded: !version,ok,1.4\n    received: !version,ok,1.2\n"
        "    differs:  version '1.2', recorded '1.4'",
        "reply to ?set-enable,1,2\n    recorded: !set-enable,ok\n"
        "    received: !set-enable,invalid,unknown command 'set-enable'\n"
        "    differs:  code: recorded !set-enable,ok, received !set-enable,invalid"]
    # ...and, not nodding, the 1.2 server reports its 2 sections, not the 4 inputs
    # of the two feeds
    assert [line.split("\n")[-1] for line in map(str, differing.differences[2:])] == [
        "    differs:  2 values, recorded 4"]


# --------------------------------------------------------------------------
# The relay's corners, on StringTransports: nothing lost while the backend connects
# --------------------------------------------------------------------------

class HalfClosing(StringTransport):
    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


class LaterEndpoint:
    """Connects when told to (:meth:`finish`), to a :class:`HalfClosing` transport."""

    def __init__(self) -> None:
        self.factory: Any = None
        self.connecting: defer.Deferred[Any] = defer.Deferred()
        self.transport = HalfClosing()

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        self.factory = factory
        return self.connecting

    def finish(self) -> Any:
        backend = self.factory.buildProtocol(None)
        backend.makeConnection(self.transport)
        self.connecting.callback(backend)
        return backend


def relay() -> tuple[Any, HalfClosing, LaterEndpoint, ProxyFactory]:
    endpoint = LaterEndpoint()
    factory = ProxyFactory(endpoint)
    client = factory.buildProtocol(None)
    transport = HalfClosing()
    client.makeConnection(transport)
    return client, transport, endpoint, factory


def test_what_comes_before_the_backend_connects_waits_and_goes_first() -> None:
    client, transport, endpoint, factory = relay()
    assert transport.producerState == "paused"  # reads nothing more meanwhile
    client.dataReceived(b"?status\r\n?ti")
    client.readConnectionLost()
    backend = endpoint.finish()
    assert endpoint.transport.value() == b"?status\r\n?ti"
    assert endpoint.transport.write_closed and transport.producerState == "producing"
    assert transport.producer is endpoint.transport and endpoint.transport.producer is transport
    backend.dataReceived(b"!version,ok,1.4\r\n")
    assert transport.value() == b"!version,ok,1.4\r\n"
    assert factory.count == 1 and factory.connections == {client}


def test_a_client_gone_before_the_backend_connects_closes_the_backend() -> None:
    client, _, endpoint, factory = relay()
    client.connectionLost(None)
    assert client.close().called and factory.connections == set()
    endpoint.finish()
    assert endpoint.transport.disconnecting


def test_closing_a_relayed_connection_fires_once_it_is_closed() -> None:
    client, transport, endpoint, _ = relay()
    backend = endpoint.finish()
    closing = client.close()
    assert transport.disconnecting and not closing.called
    client.connectionLost(None)
    assert closing.called and endpoint.transport.disconnecting
    backend.connectionLost(None)  # the backend's side going too closes nothing twice
