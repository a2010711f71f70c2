"""The Twisted side of the server: framing, greeting, replies in order.

:class:`DBProtocol` splits the byte stream into lines (LF, with an optional
CR before it), asks the factory's :class:`~discosbackend.responder.Responder`
for each reply and writes the replies in request order, CR LF terminated,
even when some arrive later than others.  Lines longer than the limit are
answered ``invalid`` and discarded without buffering them.
"""

from __future__ import annotations

from collections import deque

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from discosbackend.grammar import UNDEFINED_NAME, fail, serialize_line
from discosbackend.handlers import Handler
from discosbackend.responder import ReplyBytes, Responder

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

    def __init__(self) -> None:
        self.data: bytes | None = None


@implementer(IHalfCloseableProtocol)
class DBProtocol(Protocol):
    """One client connection.

    A client that half-closes (shuts down its sending side, as ``nc -q``
    and scripts do) still gets every reply: the connection closes once the
    last one is written.
    """

    factory: DBProtocolFactory

    def __init__(self) -> None:
        self._buffer = b""
        self._discarding = False
        self._queue: deque[_Slot] = deque()
        self._open = False
        self._closed_waiters: list[defer.Deferred] = []
        self._input_closed = False

    def connectionMade(self) -> None:
        self._open = True
        self.factory.connections.add(self)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        _log.info("connection from {peer}", peer=_describe(self.transport.getPeer()))
        self._send(self.factory.responder.greeting())

    def connectionLost(self, reason: Failure = None) -> None:
        self._open = False
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
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """Nothing to do: we never half-close ourselves."""

    def close(self) -> defer.Deferred:
        """Close the connection; the Deferred fires once it is closed."""
        if not self._open:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._closed_waiters.append(waiter)
        self.transport.loseConnection()
        return waiter

    def dataReceived(self, data: bytes) -> None:
        limit = self.factory.max_line
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1:]
        if self._buffer:
            data = self._buffer + data
        carriage_returns = data.count(b"\r")
        if not carriage_returns:
            lines = data.split(b"\n")
        elif carriage_returns == data.count(b"\r\n") == data.count(b"\n"):
            lines = data.split(b"\r\n")  # every line ends in CR LF
        else:
            lines = data.split(b"\n")
            for index in range(len(lines) - 1):  # the last line may not be complete
                if lines[index][-1:] == b"\r":
                    lines[index] = lines[index][:-1]
        self._buffer = lines.pop()
        if lines:
            self._answer(lines, limit)
        if len(self._buffer) > limit + 1 and self._open:  # + 1: a CR may follow
            self._send(self.factory.responder.too_long(self._buffer, limit))
            self._buffer = b""
            self._discarding = True

    def _answer(self, lines: list[bytes], limit: int) -> None:
        """Answer complete ``lines``, writing the replies in order."""
        responder = self.factory.responder
        respond = responder.respond
        remaining = iter(lines)
        if not self._queue and max(map(len, lines)) <= limit:
            # The usual case: replies ready at once, written together.
            ready: list[bytes] = []
            keep = ready.append
            for line in remaining:
                answer = respond(line)
                if answer.__class__ is bytes:
                    keep(answer)
                    continue
                if ready:
                    self.transport.write(b"".join(ready))
                    ready = []
                self._send(answer)
                if not self._open:
                    return
                break
            if ready:
                self.transport.write(b"".join(ready))
        for line in remaining:  # behind a reply that comes later, or too long
            self._send(responder.too_long(line, limit) if len(line) > limit
                       else respond(line))
            if not self._open:
                return

    def _send(self, answer: ReplyBytes) -> None:
        if isinstance(answer, bytes):
            if not self._queue:
                self._write(answer)
                return
            slot = _Slot()
            slot.data = answer
            self._queue.append(slot)
            return
        slot = _Slot()
        self._queue.append(slot)
        answer.addCallbacks(self._fill, self._lost_reply, callbackArgs=(slot,),
                            errbackArgs=(slot,))

    def _fill(self, data: bytes, slot: _Slot) -> None:
        slot.data = data
        queue = self._queue
        while queue and queue[0].data is not None:
            ready = queue.popleft().data
            if self._open:
                self._write(ready)
        if self._input_closed and not queue and self._open:
            self.transport.loseConnection()

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        if data.__class__ is not bytes and getattr(data, "close_after", False):
            self._open = False
            self.transport.loseConnection()

    def _lost_reply(self, failure: Failure, slot: _Slot) -> None:
        # The responder maps every error to a reply, so this is a bug; still,
        # keep one reply per line and the queue moving.
        _log.failure("a reply could not be produced", failure)
        self._fill(_LOST_REPLY, slot)


class DBProtocolFactory(Factory):
    """Makes :class:`DBProtocol` connections that share one handler.

    ``max_line`` is the longest line accepted (bytes); ``timeout`` the
    per-request limit in seconds (``None``: wait for ever).
    """

    protocol = DBProtocol
    noisy = False  # no "starting on"/"stopping on" lines; we log connections

    def __init__(self, handler: Handler, *, max_line: int = DEFAULT_MAX_LINE,
                 timeout: float | None = None, clock: IReactorTime | None = None,
                 log_requests: bool = False) -> None:
        if max_line < 16:
            raise ValueError(f"max_line must be at least 16 bytes, not {max_line}")
        self.handler = handler
        self.max_line = max_line
        self.responder = Responder(handler, timeout=timeout, clock=clock,
                                   log_requests=log_requests)
        self.connections: set[DBProtocol] = set()

    def startFactory(self) -> None:
        self.handler.start()

    def stopFactory(self) -> None:
        self.handler.stop()

    def close_connections(self) -> defer.Deferred:
        """Close every open connection; fires when all are closed."""
        closing = [connection.close() for connection in list(self.connections)]
        return defer.gatherResults(closing)
