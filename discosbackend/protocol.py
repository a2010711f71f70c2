"""The Twisted side of the server: framing, greeting, replies in order.

:class:`DBProtocol` is a line receiver: each line (LF-terminated, one CR
before the LF dropped) goes to the factory's
:class:`~discosbackend.responder.Responder`, and the replies are written in
request order, CR LF terminated, even when some arrive later than others.
Lines longer than the limit are answered ``invalid`` and discarded without
buffering them.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime, ITransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from discosbackend.grammar import UNDEFINED_NAME, fail, serialize_line
from discosbackend.handlers import Handler
from discosbackend.responder import RawReply, ReplyBytes, Responder
from discosbackend.watchdog import DEFAULT_THRESHOLD, Watchdog

__all__ = ["DBProtocol", "DBProtocolFactory", "DEFAULT_MAX_LINE"]

#: The default longest line accepted, in bytes (without the line end).
DEFAULT_MAX_LINE = 64 * 1024

_log = Logger()
_LOST_REPLY = serialize_line(fail(UNDEFINED_NAME, "internal error: reply lost"))


def _describe(peer: object) -> str:
    """``host:port`` for TCP peers, the object's text otherwise."""
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    return f"{host}:{port}" if host is not None and port is not None else str(peer)


class _Slot:
    """A reply not written yet, holding its place in the queue."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | None = None) -> None:
        self.data = data


@implementer(IHalfCloseableProtocol)
class DBProtocol(LineOnlyReceiver):
    """One client connection.

    A client that half-closes (shuts down its sending side, as ``nc -q``
    and scripts do) still gets every reply: the connection closes once the
    last one is written.
    """

    delimiter = b"\n"
    factory: DBProtocolFactory
    transport: ITransport  # from connectionMade on, when every other call comes

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

    def connectionMade(self) -> None:
        self.MAX_LENGTH = self.factory.max_line  # pylint: disable=invalid-name
        self.factory.connections.add(self)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        _log.info("connection from {peer}", peer=_describe(self.transport.getPeer()))
        self._send(self.factory.responder.greeting())

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        self._queue.clear()
        self._buffer = b""
        self.factory.connections.discard(self)
        _log.info("connection from {peer} closed", peer=_describe(self.transport.getPeer()))
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def readConnectionLost(self) -> None:
        """The client sent all it will: close once every reply is written."""
        self._input_closed = True
        if not self._queue:
            self._lose_connection()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we never half-close ourselves."""

    def close(self) -> defer.Deferred[None]:
        """Close the connection; the Deferred fires once it is closed."""
        if not self.connected:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._closed_waiters.append(waiter)
        self._lose_connection()
        return waiter

    def dataReceived(self, data: bytes) -> None:
        # LineOnlyReceiver's own loop won't do: after an overlong line it
        # drops the rest of the packet, and it calls lineLengthExceeded again
        # for every packet of an overlong line that has not ended, where each
        # line must get exactly one reply.  It also keeps the CR.
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
        self._send(self.factory.responder.respond(line))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._send(self.factory.responder.too_long(line, self.MAX_LENGTH))

    def _send(self, reply: ReplyBytes) -> None:
        """Write ``reply`` in its turn: now, or once the replies before it are written."""
        if not isinstance(reply, bytes):  # a Deferred: hold the reply's place
            slot = _Slot()
            self._queue.append(slot)
            reply.addCallbacks(self._fill, self._lost_reply, callbackArgs=(slot,),
                               errbackArgs=(slot,))
        elif self._queue:
            self._queue.append(_Slot(reply))
        else:
            self._write(reply)

    def _fill(self, data: bytes, slot: _Slot) -> None:
        """A late reply is ready: write it and those behind it that are ready too."""
        slot.data = data
        queue = self._queue
        while queue and queue[0].data is not None:
            self._write(queue.popleft().data)  # type: ignore[arg-type]  # checked above
        if self._input_closed and not queue and self.connected:
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
    per-request limit in seconds (``None``: wait for ever); ``watchdog`` the
    seconds a packet of requests may keep the reactor before a warning
    (``None``: no watchdog; see :mod:`discosbackend.watchdog`), timed by
    ``timer``.
    """

    protocol = DBProtocol
    noisy = False  # no "starting on"/"stopping on" lines; we log connections

    def __init__(self, handler: Handler, *, max_line: int = DEFAULT_MAX_LINE,
                 timeout: float | None = None, clock: IReactorTime | None = None,
                 log_requests: bool = False, watchdog: float | None = DEFAULT_THRESHOLD,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        if max_line < 16:
            raise ValueError(f"max_line must be at least 16 bytes, not {max_line}")
        self.handler = handler
        self.max_line = max_line
        self.watchdog = Watchdog(handler, watchdog, timer) if watchdog is not None else None
        self.responder = Responder(handler, timeout=timeout, clock=clock,
                                   log_requests=log_requests)
        self.connections: set[DBProtocol] = set()

    def startFactory(self) -> None:
        self.handler.start()

    def stopFactory(self) -> None:
        self.handler.stop()

    def close_connections(self) -> defer.Deferred[list[None]]:
        """Close every open connection; fires when all are closed."""
        closing = [connection.close() for connection in list(self.connections)]
        return defer.gatherResults(closing)
