"""A transparent proxy between a client (DISCOS) and a backend that judges what it relays.

Each connection a client opens gets its own connection to the backend.
Bytes go through exactly as they come, in order, both ways (the greeting
included), each chunk forwarded before anything else is done with it.
Behind the forwarding, every line is judged by a
:class:`~discosbackend.conformance.Conversation` (the rules the
conformance checks apply), each problem is logged as it happens with the
connection and the lines involved, and with a
:class:`~discosbackend.transcript.TranscriptWriter` every line is recorded::

    port = await proxy.listen(9000, "127.0.0.1:8978",
                              recorder=TranscriptWriter.open("session.jsonl"))
    ...
    await server.stop(port)

A client that half-closes (``nc -q``) has its half-close passed on, so it
still gets every reply; either side closing closes the other once what it
sent is delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (IHalfCloseableProtocol, IListeningPort,
                                         IStreamClientEndpoint, ITCPTransport)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from discosbackend.client.address import Address
from discosbackend.client.protocol import client_endpoint
from discosbackend.conformance import Conversation, LineBuffer, show
from discosbackend.protocol import describe_peer
from discosbackend.reactor import or_global
from discosbackend.server import endpoint_description
from discosbackend.transcript import CLIENT, SERVER, TranscriptWriter

__all__ = ["Problem", "ProxyFactory", "listen"]

_log = Logger()


@dataclass(frozen=True)
class Problem:
    """Something that broke the protocol on a proxied connection.

    ``sender`` is whose line it is (:data:`~discosbackend.transcript.CLIENT`
    or :data:`~discosbackend.transcript.SERVER`); ``request`` and ``reply``
    the lines involved, as they went over the wire.
    """

    connection: int
    sender: str
    text: str
    request: bytes | None = None
    reply: bytes | None = None

    def __str__(self) -> str:
        lines = [f"connection {self.connection}, {self.sender}: {self.text}"]
        if self.request is not None:
            lines.append(f"    request: {show(self.request)}")
        if self.reply is not None:
            lines.append(f"    reply:   {show(self.reply)}")
        return "\n".join(lines)


def _no_delay(transport: Any) -> None:
    if ITCPTransport.providedBy(transport):  # pylint: disable=no-value-for-parameter
        transport.setTcpNoDelay(True)


# The transports below are TCP or Unix ones: consumers and push producers
# (ITransport, as they are typed, says neither).

def _couple(one: Any, other: Any) -> None:
    """Each transport pauses reading the other while its own writes are backed up."""
    one.registerProducer(other, True)
    other.registerProducer(one, True)


def _read(transport: Any, reading: bool) -> None:
    """Pause or resume reading from ``transport``."""
    if reading:
        transport.resumeProducing()
    else:
        transport.pauseProducing()


def _half_close(transport: Any) -> None:
    """Send EOF on ``transport`` (TCP and Unix transports can), keeping it open for reading."""
    transport.loseWriteConnection()


class _Backend(Protocol):
    """The connection to the backend for one client connection."""

    def __init__(self, client: _Client) -> None:
        self.client = client

    def connectionMade(self) -> None:
        _no_delay(self.transport)
        self.client.backend_connected(self)

    def dataReceived(self, data: bytes) -> None:
        client = self.client
        assert client.transport is not None  # connected while we are
        client.transport.write(data)  # first of all: judging comes after
        client.judge_server(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.client.backend_lost()


class _BackendFactory(Factory):
    """Makes the one :class:`_Backend` connection of ``client``."""

    noisy = False

    def __init__(self, client: _Client) -> None:
        self.client = client

    def buildProtocol(self, addr: object) -> _Backend:
        return _Backend(self.client)


@implementer(IHalfCloseableProtocol)
class _Client(Protocol):
    """One client connection, relayed to its own connection to the backend."""

    factory: ProxyFactory

    def __init__(self) -> None:
        self.number = 0
        self.backend: _Backend | None = None
        self._waiting: list[bytes] = []      # what came before the backend answered
        self._half_closed = False
        self._closed = False
        self._backend_gone = False  # the backend closed first
        self._close_waiters: list[defer.Deferred[None]] = []
        self._conversation = Conversation()
        self._lines = {CLIENT: LineBuffer(), SERVER: LineBuffer()}

    # -- life cycle -----------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.number = factory.opened(self)
        assert self.transport is not None
        _no_delay(self.transport)
        # Read nothing more until the backend's connection is up (what was
        # read already waits in _waiting).
        _read(self.transport, False)
        peer = describe_peer(self.transport.getPeer())
        if factory.recorder is not None:
            factory.recorder.opened(self.number, peer)
        _log.info("connection {connection} from {peer}", connection=self.number, peer=peer)
        connecting = factory.upstream.connect(_BackendFactory(self))
        connecting.addErrback(self._cannot_reach)

    def backend_connected(self, backend: _Backend) -> None:
        """The backend's connection is up: relay what waited, and apply back-pressure."""
        assert self.transport is not None and backend.transport is not None
        if self._closed:
            backend.transport.loseConnection()
            return
        self.backend = backend
        _couple(self.transport, backend.transport)
        if self._waiting:
            backend.transport.write(b"".join(self._waiting))
            self._waiting.clear()
        if self._half_closed:
            _half_close(backend.transport)
        _read(self.transport, True)

    def _cannot_reach(self, failure: Failure) -> None:
        _log.error("connection {connection}: cannot reach the backend: {reason}",
                   connection=self.number, reason=failure.getErrorMessage())
        assert self.transport is not None
        self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """The client sent all it will: tell the backend, which closes after its replies."""
        self._half_closed = True
        if self.backend is not None:
            _half_close(self.backend.transport)

    def writeConnectionLost(self) -> None:
        """Nothing to do: the proxy never half-closes towards the client by itself."""

    def backend_lost(self) -> None:
        """The backend closed: close towards the client once what it sent is delivered."""
        if self.transport is not None and not self._closed:
            self._backend_gone = True
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closed = True
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.loseConnection()
        for sender, buffer in self._lines.items():
            rest = buffer.rest()
            if rest:  # a last line cut short
                self._line(sender, rest)
        # Requests left unanswered: the backend's doing if it closed first.
        for text in self._conversation.close():
            self._report(Problem(self.number, SERVER if self._backend_gone else CLIENT, text))
        recorder = self.factory.recorder
        if recorder is not None:
            recorder.closed(self.number)
        _log.info("connection {connection} closed", connection=self.number)
        self.factory.closed(self)
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- relaying and judging ---------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        backend = self.backend
        if backend is None:
            self._waiting.append(data)
        else:
            assert backend.transport is not None
            backend.transport.write(data)
        self._judge(CLIENT, data)

    def judge_server(self, data: bytes) -> None:
        """Bytes the backend sent (already relayed): record and judge their lines."""
        self._judge(SERVER, data)

    def _judge(self, sender: str, data: bytes) -> None:
        for line in self._lines[sender].feed(data):
            self._line(sender, line)

    def _line(self, sender: str, line: bytes) -> None:
        recorder = self.factory.recorder
        if recorder is not None:
            recorder.line(self.number, sender, line)
        if sender == CLIENT:
            for text in self._conversation.request(line):
                self._report(Problem(self.number, CLIENT, text, request=line))
            return
        request, problems = self._conversation.reply(line)
        for text in problems:
            self._report(Problem(self.number, SERVER, text, request, line))

    def _report(self, problem: Problem) -> None:
        _log.warn("{problem}", problem=problem)
        if self.factory.on_problem is not None:
            self.factory.on_problem(problem)

    def close(self) -> defer.Deferred[None]:
        """Close the connection (and the backend's); fires once it is closed."""
        if self._closed or self.transport is None:
            return defer.succeed(None)
        closed: defer.Deferred[None] = defer.Deferred()
        self._close_waiters.append(closed)
        self.transport.loseConnection()
        return closed


class ProxyFactory(Factory[_Client]):
    """Relays each client connection to a new connection made through ``upstream``.

    ``recorder`` records every line; ``on_problem`` is called with each
    :class:`Problem` (they are logged as warnings in any case).
    """

    protocol = _Client
    noisy = False

    def __init__(self, upstream: IStreamClientEndpoint, *,
                 recorder: TranscriptWriter | None = None,
                 on_problem: Callable[[Problem], object] | None = None) -> None:
        self.upstream = upstream
        self.recorder = recorder
        self.on_problem = on_problem
        self.connections: set[_Client] = set()
        #: How many client connections were made so far.
        self.count = 0

    def opened(self, connection: _Client) -> int:
        """A client connected: its number (from 1)."""
        self.count += 1
        self.connections.add(connection)
        return self.count

    def closed(self, connection: _Client) -> None:
        """A client connection closed."""
        self.connections.discard(connection)

    def close_connections(self, grace: float | None = None) -> defer.Deferred[list[None]]:
        """Close every client connection (and its backend's); fires when all are closed.

        ``grace`` is :func:`discosbackend.server.stop`'s; a proxy holds no
        replies of its own to wait for, so it closes at once.
        """
        del grace
        return defer.gatherResults([connection.close() for connection in list(self.connections)])


def listen(where: int | str, to: str | Address | IStreamClientEndpoint, *,
           interface: str | None = None, recorder: TranscriptWriter | None = None,
           on_problem: Callable[[Problem], object] | None = None,
           reactor: Any = None) -> defer.Deferred[IListeningPort]:
    """Start proxying connections to ``where`` (a port or endpoint string) on to ``to``.

    ``to`` is the backend: ``HOST:PORT``, a client endpoint string, an
    :class:`~discosbackend.client.address.Address` or an endpoint.  The
    Deferred fires with the listening port; stop it with
    :func:`discosbackend.server.stop`, which closes the connections.
    A bad endpoint or address raises ``ValueError`` at once.
    """
    reactor = or_global(reactor)
    endpoint = serverFromString(reactor, endpoint_description(where, interface))
    factory = ProxyFactory(client_endpoint(to, reactor), recorder=recorder,
                           on_problem=on_problem)
    return endpoint.listen(factory)
