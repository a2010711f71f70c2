"""The Twisted side of the server: framing, greeting, replies in order.

:class:`DBProtocol` is a line receiver: each line (LF-terminated, one CR
before the LF dropped) goes to the factory's
:class:`~discosbackend.responder.Responder`, and the replies are written in
request order, CR LF terminated, even when some arrive later than others.
Lines longer than the limit are answered ``invalid`` and discarded without
buffering them.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import Callable

from twisted.internet import defer
from twisted.internet.interfaces import (IDelayedCall, IHalfCloseableProtocol, IReactorTime,
                                         ITransport)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from discosbackend.grammar import UNDEFINED_NAME, fail, serialize_line
from discosbackend.handlers import Handler
from discosbackend.reactor import or_global
from discosbackend.wording import counted
from discosbackend.responder import RawReply, ReplyBytes, Responder

__all__ = ["DBProtocol", "DBProtocolFactory", "DEFAULT_MAX_LINE", "DEFAULT_LINGER"]

#: The default longest line accepted, in bytes (without the line end).
DEFAULT_MAX_LINE = 64 * 1024
#: Seconds a connection whose client closed its side waits for the replies
#: still due, by default: the longest the real client ever waits for one.
DEFAULT_LINGER = 900.0

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
    last one is written.  A client that closes altogether looks the same
    from here, so the connection waits for the replies still due at most
    the factory's ``linger`` seconds, then closes anyway: no socket is left
    waiting for a reply that never comes.
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
        self._lingering: IDelayedCall | None = None
        #: The client, as the log names it.
        self.peer = "-"

    def connectionMade(self) -> None:
        self.MAX_LENGTH = self.factory.max_line  # pylint: disable=invalid-name
        self.factory.connections.add(self)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.peer = _describe(self.transport.getPeer())
        responder = self.factory.responder
        # Chosen once, so that a server that does not log pays nothing for it.
        self._respond = (partial(responder.respond_logged, self.peer)
                         if responder.log_requests else responder.respond)
        _log.info("connection from {peer}", peer=self.peer)
        self._send(responder.greeting())

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        self._queue.clear()
        self._buffer = b""
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

    def lineReceived(self, line: bytes) -> None:
        self._send(self._respond(line))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._send(self.factory.responder.too_long(line, self.MAX_LENGTH, self.peer))

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
    per-request limit in seconds (``None``: wait for ever); ``linger`` how
    long a connection whose client has closed its side waits for the
    replies still due, in seconds (``None``: for ever); ``log_requests``
    logs every exchange (see :mod:`discosbackend.logs`).
    """

    protocol = DBProtocol
    noisy = False  # no "starting on"/"stopping on" lines; we log connections

    def __init__(self, handler: Handler, *, max_line: int = DEFAULT_MAX_LINE,
                 timeout: float | None = None, clock: IReactorTime | None = None,
                 log_requests: bool = False, linger: float | None = DEFAULT_LINGER) -> None:
        if max_line < 16:
            raise ValueError(f"max_line must be at least 16 bytes, not {max_line}")
        self.handler = handler
        self.max_line = max_line
        self.linger = linger
        self._clock = clock
        self.responder = Responder(handler, timeout=timeout, clock=clock,
                                   log_requests=log_requests)
        self.connections: set[DBProtocol] = set()

    @property
    def clock(self) -> IReactorTime:
        """The clock delayed closes run on: the reactor unless one was given."""
        return or_global(self._clock)

    def startFactory(self) -> None:
        self.handler.start()

    def stopFactory(self) -> None:
        self.handler.stop()

    def close_connections(self) -> defer.Deferred[list[None]]:
        """Close every open connection; fires when all are closed."""
        closing = [connection.close() for connection in list(self.connections)]
        return defer.gatherResults(closing)
