"""The Twisted side of the server: framing, greeting, replies in order.

:class:`DBProtocol` is a line receiver: each line (LF-terminated, one CR
before the LF dropped) goes to the factory's
:class:`~discosbackend.responder.Responder`, and the replies are written in
request order, CR LF terminated, even when some arrive later than others.
Lines longer than the limit are answered ``invalid`` and discarded without
buffering them.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import time
from collections import deque
from functools import partial
from ipaddress import IPv4Network, IPv6Network
from typing import Callable, Iterable

from twisted.internet import defer
from twisted.internet.interfaces import (IAddress, IDelayedCall, IHalfCloseableProtocol,
                                         IPushProducer, IReactorTime, ITransport)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from discosbackend.grammar import UNDEFINED_NAME, fail, name_of, serialize_line
from discosbackend.handlers import Handler
from discosbackend.reactor import or_global
from discosbackend.responder import RawReply, ReplyBytes, Responder
from discosbackend.wording import counted
from discosbackend.watchdog import DEFAULT_THRESHOLD, Watchdog

__all__ = ["DBProtocol", "DBProtocolFactory", "DEFAULT_MAX_LINE", "DEFAULT_MAX_UNSENT",
           "DEFAULT_MAX_PENDING", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_LINGER",
           "parse_networks", "describe_peer"]

#: The default longest line accepted, in bytes (without the line end).
DEFAULT_MAX_LINE = 64 * 1024
#: Replies unsent (bytes) above which a connection is not read.  Twisted reads
#: a connection this much at a time too: a large value makes each read (and
#: the time the reactor spends answering it) as large.
DEFAULT_MAX_UNSENT = 4 * 1024
#: Replies waiting for an earlier one above which a connection is not read.
DEFAULT_MAX_PENDING = 1000
#: Connections served at once by default.
DEFAULT_MAX_CONNECTIONS = 256
#: Seconds a connection whose client closed its side waits for the replies
#: still due, by default: the longest the real client ever waits for one.
DEFAULT_LINGER = 900.0

_log = Logger()
#: The kernel's send buffer of each connection (bytes): big enough for a
#: client that reads as fast as it pipelines, small enough that one that does
#: not read is paused soon.
_KERNEL_SEND_BUFFER = 64 * 1024
_LOST_REPLY = serialize_line(fail(UNDEFINED_NAME, "internal error: reply lost"))
_TOO_MANY = serialize_line(fail(UNDEFINED_NAME, "too many connections"))


def describe_peer(peer: object) -> str:
    """``host:port`` for TCP peers, the object's text otherwise."""
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    return f"{host}:{port}" if host is not None and port is not None else str(peer)


class _Slot:
    """A reply not written yet, holding its place in the queue.

    ``name`` is the request's, for answering it ``fail`` at shutdown.
    """

    __slots__ = ("data", "name")

    def __init__(self, data: bytes | None = None, name: str = UNDEFINED_NAME) -> None:
        self.data = data
        self.name = name


class _RateLimitedLog:
    """Logs a repeated warning at most once a ``period``, with how many were held back."""

    def __init__(self, clock: Callable[[], IReactorTime], period: float = 60.0) -> None:
        self._clock = clock
        self._period = period
        self._next = -math.inf
        self._held_back = 0

    def warn(self, text: str, **fields: object) -> None:
        now = self._clock().seconds()
        if now < self._next:
            self._held_back += 1
            return
        if self._held_back:
            text += f" ({self._held_back} more since the last such line)"
        _log.warn(text, **fields)
        self._next, self._held_back = now + self._period, 0


class _Refusal(Protocol):
    """Says one line to a connection the server will not serve, and closes it."""

    def __init__(self, line: bytes) -> None:
        self.line = line

    def connectionMade(self) -> None:
        self.transport.write(self.line)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


@implementer(IHalfCloseableProtocol, IPushProducer)
class DBProtocol(LineOnlyReceiver):
    """One client connection.

    A client that half-closes (shuts down its sending side, as ``nc -q``
    and scripts do) still gets every reply: the connection closes once the
    last one is written.

    Backpressure: while more than the factory's ``max_unsent`` bytes of
    replies wait to be sent, or more than ``max_pending`` replies wait for
    one before them, the connection is not read, so a client that does not
    read its replies cannot make the server grow.  The protocol is the
    transport's producer: the transport pauses it when its buffer is full.

    A client that closes altogether looks the same from here, so the
    connection waits for the replies still due at most the factory's
    ``linger`` seconds, then closes anyway: no socket is left waiting for a
    reply that never comes.
    """

    delimiter = b"\n"
    factory: DBProtocolFactory
    transport: ITransport  # from connectionMade on, when every other call comes
    # The responder's respond (or respond_logged, for this peer), from connectionMade on.
    _respond: Callable[[bytes], ReplyBytes]

    def __init__(self) -> None:
        # Replies waiting for one before them to be ready (a Deferred).
        self._queue: deque[_Slot] = deque()
        # The replies to the packet being read, written together at its end.
        self._batch: list[bytes] | None = None
        # Whether the rest of an overlong line is still arriving.
        self._discarding = False
        self._input_closed = False
        self._closing = False
        self._closed_waiters: list[defer.Deferred[None]] = []
        # Why the connection is not read now: "unsent", "pending" or both.
        self._holds: set[str] = set()
        self._idle: IDelayedCall | None = None
        self._lingering: IDelayedCall | None = None
        #: The client, as the log names it.
        self.peer = "-"

    def connectionMade(self) -> None:
        self.MAX_LENGTH = self.factory.max_line  # pylint: disable=invalid-name
        self.factory.connections.add(self)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
            # A modest kernel send buffer: a client that does not read fills
            # it (and so stops being read) after some thousand replies, not
            # after the megabytes the kernel would otherwise take, all of
            # them the reactor's work while other clients wait.
            self.transport.getHandle().setsockopt(  # type: ignore[attr-defined]
                socket.SOL_SOCKET, socket.SO_SNDBUF, _KERNEL_SEND_BUFFER)
        if hasattr(self.transport, "bufferSize"):  # a real socket's transport
            # It pauses its producer once this many bytes wait to be sent
            # (and reads this many at a time: see DEFAULT_MAX_UNSENT).
            self.transport.bufferSize = self.factory.max_unsent
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]  # a consumer too
        self.peer = describe_peer(self.transport.getPeer())
        responder = self.factory.responder
        # Chosen once, so that a server that does not log pays nothing for it.
        self._respond = (partial(responder.respond_logged, self.peer)
                         if responder.log_requests else responder.respond)
        _log.info("connection from {peer}", peer=self.peer)
        self._touch()
        self._send(responder.greeting())

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        self._queue.clear()
        self._buffer = b""
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        if self._lingering is not None and self._lingering.active():
            self._lingering.cancel()
        self.factory.connections.discard(self)
        _log.info("connection from {peer} closed", peer=self.peer)
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def readConnectionLost(self) -> None:
        """The client sent all it will: close once every reply is written.

        Replies still due get ``linger`` seconds at most (the client may be
        gone altogether: TCP cannot tell), then the connection closes.
        """
        self._input_closed = True
        if not self._queue:
            self._lose_connection()
        elif self.factory.linger is not None:
            self._lingering = self.factory.clock.callLater(self.factory.linger, self._give_up)

    def _give_up(self) -> None:
        _log.info("closing the connection from {peer}: it closed its side and {replies} "
                  "still due after {linger:g} s", peer=self.peer,
                  replies=counted(len(self._queue), "reply", "replies"),
                  linger=self.factory.linger)
        self._lose_connection()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we never half-close ourselves."""

    def close(self) -> defer.Deferred[None]:
        """Close the connection; the Deferred fires once it is closed.

        Requests still waiting for their reply are answered
        ``fail,shutting down`` first, in order.
        """
        if not self.connected:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._closed_waiters.append(waiter)
        if not self._closing:
            for slot in self._queue:
                if slot.data is None:
                    slot.data = _shutting_down(slot.name)
            self._fill_queue()
            self._lose_connection()
        return waiter

    def abort(self) -> None:
        """Drop the connection now, whatever is still unsent."""
        self._closing = True
        abort = getattr(self.transport, "abortConnection", None)
        (abort or self.transport.loseConnection)()

    # -- backpressure (IPushProducer, for the transport) ------------------

    def pauseProducing(self) -> None:
        """The transport's buffer is full: stop reading the client."""
        self._hold("unsent")

    def resumeProducing(self) -> None:
        """The transport's buffer drained: read again."""
        self._release("unsent")

    def stopProducing(self) -> None:
        """The connection is going: nothing to stop."""

    def _hold(self, why: str) -> None:
        if not self._holds and self.connected:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        self._holds.add(why)

    def _release(self, why: str) -> None:
        if why in self._holds:
            self._holds.discard(why)
            if not self._holds and self.connected and not self._closing:
                self.transport.resumeProducing()  # type: ignore[attr-defined]

    def _touch(self) -> None:
        """The client did something: (re)start the idle timer, if there is one."""
        seconds = self.factory.idle_timeout
        if seconds is None:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(seconds)
        else:
            self._idle = self.factory.clock.callLater(seconds, self._idle_too_long, seconds)

    def _idle_too_long(self, seconds: float) -> None:
        _log.info("closing the connection from {peer}: idle for {seconds:g} s",
                  peer=describe_peer(self.transport.getPeer()), seconds=seconds)
        self.close()

    def dataReceived(self, data: bytes) -> None:
        # LineOnlyReceiver's own loop won't do: after an overlong line it
        # drops the rest of the packet, and it calls lineLengthExceeded again
        # for every packet of an overlong line that has not ended, where each
        # line must get exactly one reply.  It also keeps the CR.
        if self._idle is not None:
            self._touch()
        if self._discarding:  # the rest of an overlong line: skip to its end
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1:]
        watchdog = self.factory.watchdog
        started = watchdog.timer() if watchdog is not None else 0.0
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        self._batch = []
        limit = self.MAX_LENGTH
        try:
            for line in lines:
                if self._closing:
                    return  # a reply closed the connection: ignore what followed
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > limit:
                    self.lineLengthExceeded(line)
                else:
                    self.lineReceived(line)
            if len(self._buffer) > limit + 1:  # + 1: it may end in the CR
                self.lineLengthExceeded(self._buffer)
                self._buffer = b""
                self._discarding = True
        finally:
            self._flush()
            self._batch = None
            if watchdog is not None:
                watchdog.check(started, lines)

    def lineReceived(self, line: bytes) -> None:
        reply = self._respond(line)
        if isinstance(reply, bytes):
            self._send(reply)
        else:
            self._send(reply, name_of(line))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._send(self.factory.responder.too_long(line, self.MAX_LENGTH, self.peer))

    def _send(self, reply: ReplyBytes, name: str = UNDEFINED_NAME) -> None:
        """Write ``reply`` (to request ``name``) in its turn: now, or once the
        replies before it are written."""
        queue = self._queue
        if not isinstance(reply, bytes):  # a Deferred: hold the reply's place
            slot = _Slot(name=name)
            queue.append(slot)
            reply.addCallbacks(self._fill, self._lost_reply, callbackArgs=(slot,),
                               errbackArgs=(slot,))
        elif queue:
            queue.append(_Slot(reply))
        else:
            self._write(reply)
            return
        if len(queue) >= self.factory.max_pending:
            self._hold("pending")

    def _fill(self, data: bytes, slot: _Slot) -> None:
        """A late reply is ready: write it and those behind it that are ready too."""
        if slot.data is None:  # not answered already, as at shutdown
            slot.data = data
            self._fill_queue()

    def _fill_queue(self) -> None:
        queue = self._queue
        while queue and queue[0].data is not None:
            self._write(queue.popleft().data)  # type: ignore[arg-type]  # checked above
        if len(queue) < self.factory.max_pending // 2:
            self._release("pending")
        if self._input_closed and not queue and self.connected and not self._closing:
            self._lose_connection()

    def _lost_reply(self, failure: Failure, slot: _Slot) -> None:
        # The responder maps every error to a reply, so this is a bug; still,
        # keep one reply per line and the queue moving.
        _log.failure("a reply could not be produced", failure)
        self._fill(_LOST_REPLY, slot)

    def _write(self, data: bytes) -> None:
        if not self.connected or self._closing:
            return  # the reply came after the client left, or we closed
        if self._batch is None:
            self.transport.write(data)
        else:
            self._batch.append(data)
        if isinstance(data, RawReply) and data.close_after:
            # Fault injection asked to close once this reply is out: write
            # what is batched first (loseConnection still sends what was
            # written), and the packet's later lines get no reply.
            self._flush()
            self._lose_connection()

    def _lose_connection(self) -> None:
        """Close once what was written is sent; write nothing more."""
        self._closing = True
        self.transport.loseConnection()

    def _flush(self) -> None:
        if self._batch:
            self.transport.write(b"".join(self._batch))
            self._batch.clear()


class DBProtocolFactory(Factory[DBProtocol]):
    """Makes :class:`DBProtocol` connections that share one handler.

    ``max_line`` is the longest line accepted (bytes); ``timeout`` the
    per-request limit in seconds (``None``: wait for ever).  Each connection
    is not read while it has more than ``max_unsent`` bytes of replies
    unsent or ``max_pending`` replies waiting.  Admission: at most
    ``max_connections`` at once (the next is told ``too many connections``
    and closed; ``None``: no cap); only peers in ``allow`` (IP networks such
    as ``"10.0.0.0/8"``; ``None``: anyone); a connection that sends nothing
    for ``idle_timeout`` seconds is closed (``None``: never).  ``linger`` is how
    long a connection whose client has closed its side waits for the
    replies still due, in seconds (``None``: for ever); ``log_requests``
    logs every exchange (see :mod:`discosbackend.logs`).  ``watchdog`` is
    the seconds a packet of requests may keep the reactor before a warning
    (``None``: no watchdog; see :mod:`discosbackend.watchdog`), timed by
    ``timer``.
    """

    protocol = DBProtocol
    noisy = False  # no "starting on"/"stopping on" lines; we log connections

    def __init__(self, handler: Handler, *, max_line: int = DEFAULT_MAX_LINE,
                 timeout: float | None = None, clock: IReactorTime | None = None,
                 log_requests: bool = False, max_unsent: int = DEFAULT_MAX_UNSENT,
                 max_pending: int = DEFAULT_MAX_PENDING,
                 max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
                 allow: Iterable[str] | None = None,
                 idle_timeout: float | None = None,
                 linger: float | None = DEFAULT_LINGER,
                 watchdog: float | None = DEFAULT_THRESHOLD,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        if max_line < 16:
            raise ValueError(f"max_line must be at least 16 bytes, not {max_line}")
        if max_pending < 2 or max_unsent < 1:
            raise ValueError("max_pending must be at least 2 and max_unsent at least 1")
        self.handler = handler
        self.max_line = max_line
        self.max_unsent = max_unsent
        self.max_pending = max_pending
        self.max_connections = max_connections
        self.allow = None if allow is None else parse_networks(allow)
        self.idle_timeout = idle_timeout
        self._clock = clock
        self.linger = linger
        self.watchdog = Watchdog(handler, watchdog, timer) if watchdog is not None else None
        self.responder = Responder(handler, timeout=timeout, clock=clock,
                                   log_requests=log_requests)
        self.connections: set[DBProtocol] = set()
        self._refusals = _RateLimitedLog(lambda: self.clock)

    def buildProtocol(self, addr: IAddress) -> Protocol | None:  # type: ignore[override]
        host = getattr(addr, "host", None)
        if self.allow is not None and host is not None and not _allowed(host, self.allow):
            self._refusals.warn("refused a connection from {host}: not in the allow list",
                                host=host)
            return None  # closed at once
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            self._refusals.warn("refused a connection from {host}: {count} already open "
                                "(max-connections)", host=host, count=len(self.connections))
            return _Refusal(_TOO_MANY)
        return super().buildProtocol(addr)

    @property
    def clock(self) -> IReactorTime:
        """The clock delayed closes run on: the reactor unless one was given."""
        return or_global(self._clock)

    def startFactory(self) -> None:
        self.handler.start()

    def stopFactory(self) -> None:
        self.handler.stop()

    def close_connections(self, grace: float | None = None) -> defer.Deferred[list[None]]:
        """Close every open connection; fires when all are closed.

        Requests still waiting are answered ``fail,shutting down``; a
        connection whose replies are not read within ``grace`` seconds
        (``None``: no limit) is dropped.
        """
        connections = list(self.connections)
        closing = defer.gatherResults([connection.close() for connection in connections])
        if grace is not None and connections:
            def drop() -> None:
                for connection in list(self.connections):
                    _log.warn("dropping the connection from {peer}: its replies were not "
                              "read within {grace:g} s", grace=grace,
                              peer=describe_peer(connection.transport.getPeer()))
                    connection.abort()
            dropping = self.clock.callLater(grace, drop)

            def done(result: list[None]) -> list[None]:
                if dropping.active():
                    dropping.cancel()
                return result
            closing.addBoth(done)
        return closing


def parse_networks(texts: Iterable[str]) -> list[IPv4Network | IPv6Network]:
    """IP networks from CIDR texts (``10.0.0.0/8``, ``::1``); ``ValueError`` if one is bad."""
    return [ipaddress.ip_network(text.strip(), strict=False) for text in texts]


def _allowed(host: str, networks: list[IPv4Network | IPv6Network]) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _shutting_down(name: str) -> bytes:
    return serialize_line(fail(name, "shutting down"))
