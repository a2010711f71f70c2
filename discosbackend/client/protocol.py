"""The Twisted client: :class:`DBClientProtocol` and :func:`connect`.

::

    from twisted.internet import defer, task
    from discosbackend.client import connect

    async def main(reactor):
        client = await connect("127.0.0.1:8978", timeout=5)
        print(client.server_version, await client.get_tpi())
        await client.close()

    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))

Requests may be issued back to back: they are written at once and the
replies are matched to them first in, first out.  A reply whose name does
not match the oldest pending request means the two sides are out of step:
that request fails with :class:`~discosbackend.client.errors.ProtocolError`
and the connection is dropped, failing every other pending request with
:class:`~discosbackend.client.errors.ConnectionLost`.

Timeouts: a request that times out fails with
:class:`~discosbackend.client.errors.RequestTimeout` but **keeps its place**
in the queue; its reply, when it comes, is read and thrown away, so later
requests still get their own replies.  Cancelling a request's Deferred
does the same.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, TypeVar, cast

from twisted.internet import defer
from twisted.internet.endpoints import (HostnameEndpoint, UNIXClientEndpoint,
                                        clientFromString)
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import (IAddress, IReactorTime, IStreamClientEndpoint,
                                         ITCPTransport)
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from discosbackend.client.address import Address, parse_address
from discosbackend.client.errors import (ClientError, ConnectFailed, ConnectionLost,
                                         ProtocolError, RequestTimeout, cannot_connect,
                                         error_for_reply)
from discosbackend.client.typed import Call, TypedCommands, format_argument
from discosbackend.commands import VERSION
from discosbackend.grammar import (INVALID, OK, UNDEFINED_NAME, GrammarException, Message,
                                   parse_line, request, serialize_line)
from discosbackend.reactor import or_global

__all__ = ["DBClientProtocol", "DBClientFactory", "connect", "client_endpoint",
           "DEFAULT_CONNECT_TIMEOUT"]

#: Seconds allowed for connecting and reading the greeting, by default.
DEFAULT_CONNECT_TIMEOUT = 10.0

T = TypeVar("T")


def timeout_converter(request_message: Message,
                      timeout: float) -> Callable[[T | Failure, float], T | Failure]:
    """An ``onTimeoutCancel`` for ``Deferred.addTimeout``: fail with RequestTimeout."""
    def convert(result: T | Failure, _timeout: float) -> T | Failure:
        if isinstance(result, Failure):
            return Failure(RequestTimeout(
                f"{request_message.name}: no reply within {timeout:g} s"))
        return result  # pragma: no cover - a timed-out Deferred always fails
    return convert


class _Pending:
    """A request written and waiting for its reply."""

    __slots__ = ("request", "deferred", "abandoned")

    def __init__(self, request_message: Message) -> None:
        self.request = request_message
        self.abandoned = False
        self.deferred: defer.Deferred[Message] = defer.Deferred(self._cancel)

    def _cancel(self, _deferred: defer.Deferred[Message]) -> None:
        # Keep the place in the queue: the reply still has to be read.
        self.abandoned = True

    def answer(self, reply: Message) -> None:
        if self.abandoned:
            return
        error = error_for_reply(self.request, reply)
        if error is None:
            self.deferred.callback(reply)
        else:
            self.deferred.errback(error)

    def fail(self, error: Exception) -> None:
        if not self.abandoned and not self.deferred.called:
            self.deferred.errback(error)


def _fire(waiters: list[defer.Deferred[T]], result: T | Exception) -> None:
    for waiter in waiters:
        if not waiter.called:  # a waiter may have been cancelled
            if isinstance(result, Exception):
                waiter.errback(result)
            else:
                waiter.callback(result)


class DBClientProtocol(LineOnlyReceiver, TypedCommands):
    """One client connection to a DISCOS backend.

    ``timeout`` is the default per-request timeout in seconds (``None``:
    wait for ever), timed on ``clock`` (the reactor by default).  Wait for
    :meth:`when_ready` (fires with the protocol once the greeting is read)
    before relying on :attr:`server_version`; requests issued earlier are
    fine, they are answered after the greeting.
    """

    delimiter = b"\n"
    #: The longest line accepted from the server; longer drops the connection.
    MAX_LENGTH = 1024 * 1024

    def __init__(self, *, timeout: float | None = None,
                 clock: IReactorTime | None = None) -> None:
        self.timeout = timeout
        self._clock = clock
        #: The greeting message, once read.
        self.greeting: Message | None = None
        #: The protocol version the greeting announced, once read.
        self.server_version: str | None = None
        self._pending: deque[_Pending] = deque()
        self._open = False
        self._closed = False
        self._error: ClientError | None = None
        self._ready_waiters: list[defer.Deferred[DBClientProtocol]] = []
        self._closed_waiters: list[defer.Deferred[None]] = []

    @property
    def clock(self) -> IReactorTime:
        """The clock that times requests out."""
        return or_global(self._clock)

    @property
    def pending(self) -> int:
        """How many requests are waiting for their reply (timed-out ones included)."""
        return len(self._pending)

    @property
    def is_open(self) -> bool:
        """Whether requests can be sent now (connected, not closing, no protocol error)."""
        return (self._open and self._error is None
                and not getattr(self.transport, "disconnecting", False))

    # -- life cycle -----------------------------------------------------

    def connectionMade(self) -> None:
        self._open = True
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:  # pragma: no cover - e.g. not a TCP socket after all
                pass

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._open = False
        self._closed = True
        error = self._error
        why = (f"connection dropped after a protocol error: {error}" if error is not None
               else f"connection lost: {reason.getErrorMessage() if reason else 'closed'}")
        pending, self._pending = self._pending, deque()
        for entry in pending:
            entry.fail(ConnectionLost(f"{entry.request.name}: {why}"))
        if self.greeting is None:
            ready, self._ready_waiters = self._ready_waiters, []
            _fire(ready, ConnectFailed(f"connection closed before the greeting: {why}"))
        closed, self._closed_waiters = self._closed_waiters, []
        _fire(closed, None)

    def when_ready(self) -> defer.Deferred[DBClientProtocol]:
        """A Deferred that fires with this protocol once the greeting is read.

        It fails with :class:`~discosbackend.client.errors.ConnectFailed` (or
        :class:`~discosbackend.client.errors.ProtocolError` for a bad
        greeting) if the connection closes first.
        """
        if self.greeting is not None:
            return defer.succeed(self)
        if self._closed:
            return defer.fail(ConnectFailed("connection closed before the greeting"))
        waiter: defer.Deferred[DBClientProtocol] = defer.Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def when_closed(self) -> defer.Deferred[None]:
        """A Deferred that fires (with ``None``) once the connection is closed."""
        if self._closed:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._closed_waiters.append(waiter)
        return waiter

    def close(self) -> defer.Deferred[None]:
        """Close the connection; fires once it is closed.  Pending requests fail."""
        closed = self.when_closed()
        if self.transport is not None and not self._closed:
            self.transport.loseConnection()
        return closed

    # -- requests -------------------------------------------------------

    def request(self, name: str, *arguments: object,
                timeout: float | None = None) -> defer.Deferred[Message]:
        """Send ``?name,arguments...``; the Deferred fires with the ``ok`` reply.

        Arguments that are not strings are formatted with
        :func:`~discosbackend.client.typed.format_argument`.  A ``fail`` or
        ``invalid`` reply fails the Deferred with ``CommandFailed`` or
        ``CommandInvalid``.  ``timeout`` overrides the protocol's default.
        A name or argument the grammar cannot carry raises at once.
        """
        message = request(name, *(format_argument(argument) for argument in arguments))
        return self.send_request(message, timeout=timeout)

    def send_request(self, message: Message, *,
                     timeout: float | None = None) -> defer.Deferred[Message]:
        """Send a request :class:`~discosbackend.grammar.Message`; see :meth:`request`."""
        if not message.is_request():
            raise ValueError(f"not a request: {message}")
        data = serialize_line(message)
        if not self.is_open:
            why = f"protocol error: {self._error}" if self._error else "not connected"
            if self._open and self._error is None:
                why = "the connection is closing"
            return defer.fail(ConnectionLost(f"{message.name}: {why}"))
        entry = _Pending(message)
        self._pending.append(entry)
        assert self.transport is not None  # is_open: connectionMade has been called
        self.transport.write(data)
        if timeout is None:
            timeout = self.timeout
        if timeout is not None:
            entry.deferred.addTimeout(timeout, self.clock,
                                      onTimeoutCancel=timeout_converter(message, timeout))
        return entry.deferred

    def _perform(self, call: Call[T]) -> defer.Deferred[T]:
        return self.request(call.name, *call.arguments).addCallback(call.convert)

    # -- receiving ------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            message = parse_line(line)
        except GrammarException as error:
            self._protocol_error(f"unreadable line from the server {line[:80]!r}: "
                                 f"{error.reason}")
            return
        if not message.is_reply():
            self._protocol_error(f"the server sent a request: {line[:80]!r}")
        elif self.greeting is None:
            self._greeted(message)
        elif not self._pending:
            self._protocol_error(f"unexpected reply {line[:80]!r}: no request is pending")
        else:
            entry = self._pending[0]
            if message.name != entry.request.name and not (
                    message.code == INVALID and message.name == UNDEFINED_NAME):
                self._protocol_error(f"reply {str(message)[:80]!r} does not answer "
                                     f"{str(entry.request)[:80]!r}")
                return
            self._pending.popleft()
            entry.answer(message)

    def _greeted(self, message: Message) -> None:
        if message.name != VERSION or message.code != OK or not message.arguments:
            self._protocol_error(f"unexpected greeting {str(message)[:80]!r}: "
                                 f"expected !{VERSION},{OK},<version>")
            return
        self.greeting = message
        self.server_version = message.arguments[0]
        ready, self._ready_waiters = self._ready_waiters, []
        _fire(ready, self)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._protocol_error(f"line from the server longer than {self.MAX_LENGTH} bytes")

    def _protocol_error(self, text: str) -> None:
        """The server broke the protocol: fail the oldest request, drop the connection."""
        error = ProtocolError(text)
        if self._error is None:
            self._error = error
        if self._pending:
            self._pending.popleft().fail(error)
        if self.greeting is None:
            ready, self._ready_waiters = self._ready_waiters, []
            _fire(ready, ConnectFailed(f"bad greeting: {text}"))
        if self.transport is not None:
            self.transport.loseConnection()


class DBClientFactory(Factory[DBClientProtocol]):
    """Builds :class:`DBClientProtocol` with a default ``timeout`` and ``clock``."""

    protocol = DBClientProtocol

    def __init__(self, *, timeout: float | None = None,
                 clock: IReactorTime | None = None) -> None:
        self.timeout = timeout
        self.clock = clock

    def buildProtocol(self, addr: IAddress | None) -> DBClientProtocol:
        built = DBClientProtocol(timeout=self.timeout, clock=self.clock)
        built.factory = self
        return built


def client_endpoint(where: str | Address | IStreamClientEndpoint, reactor: Any = None,
                    timeout: float = DEFAULT_CONNECT_TIMEOUT) -> IStreamClientEndpoint:
    """The endpoint for ``where``: ``HOST:PORT``, an endpoint string, or an endpoint.

    ``timeout`` bounds the TCP/Unix connection attempt (an endpoint string
    sets its own with ``timeout=``).  Raises ``ValueError`` for a bad address.
    """
    if IStreamClientEndpoint.providedBy(where):  # pylint: disable=no-value-for-parameter
        return where
    reactor = or_global(reactor)
    address = parse_address(where) if isinstance(where, str) else where
    if not isinstance(address, Address):
        raise TypeError(f"cannot connect to a {type(where).__name__}")
    if address.description is not None:
        return clientFromString(reactor, address.description)
    if address.path is not None:  # pragma: no cover - only built from a description
        return UNIXClientEndpoint(reactor, address.path, timeout=timeout)
    if address.host is None or address.port is None:
        raise ValueError(f"cannot connect to {address}: it has no host and port")
    return HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)


def greeting_timeout_converter(text: str) -> Callable[[T | Failure, float], T | Failure]:
    """An ``onTimeoutCancel`` for a greeting wait: fail with ConnectFailed(``text``)."""
    def convert(result: T | Failure, _timeout: float) -> T | Failure:
        if isinstance(result, Failure):
            return Failure(ConnectFailed(text))
        return result  # pragma: no cover - a timed-out Deferred always fails
    return convert


def drop_connection(failure: Failure, protocol: DBClientProtocol) -> Failure:
    """Abort a connection that will not be used (no greeting, or cancelled)."""
    transport = protocol.transport
    if transport is not None and not getattr(transport, "disconnected", False):
        # Every transport a client endpoint makes (TCP, Unix, TLS) can abort,
        # though only ITCPTransport declares it.
        cast(ITCPTransport, transport).abortConnection()
    return failure


def connect(where: str | Address | IStreamClientEndpoint, *, timeout: float | None = None,
            connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
            reactor: Any = None) -> defer.Deferred[DBClientProtocol]:
    """Connect to a backend; the Deferred fires with the protocol after the greeting.

    ``where`` is ``HOST:PORT``, a Twisted endpoint string (``tcp:...``,
    ``unix:path=...``) or a client endpoint.  ``timeout`` is the default
    per-request timeout; ``connect_timeout`` bounds the connection attempt
    and, once connected, the wait for the greeting.  Fails with
    :class:`~discosbackend.client.errors.ConnectFailed` when the connection
    cannot be made or no proper greeting comes; cancelling it fails it with
    ``CancelledError`` (or ``ConnectingCancelledError``).
    """
    reactor = or_global(reactor)
    endpoint = client_endpoint(where, reactor,
                               connect_timeout if connect_timeout else DEFAULT_CONNECT_TIMEOUT)
    factory = DBClientFactory(timeout=timeout, clock=reactor)
    # The endpoint fires with what the factory built: a DBClientProtocol.
    connecting = cast("defer.Deferred[DBClientProtocol]", endpoint.connect(factory))

    def not_connected(failure: Failure) -> Failure:
        if failure.check(defer.CancelledError, ConnectingCancelledError):
            return failure
        assert failure.value is not None  # a Failure always holds an exception
        return Failure(ConnectFailed(cannot_connect(where, failure.value, connect_timeout)))

    def connected(protocol: DBClientProtocol) -> defer.Deferred[DBClientProtocol]:
        ready = protocol.when_ready()
        if connect_timeout:
            late = greeting_timeout_converter(
                f"no greeting from {where} within {connect_timeout:g} s")
            ready.addTimeout(connect_timeout, reactor, onTimeoutCancel=late)
        return ready.addErrback(drop_connection, protocol)

    return connecting.addCallbacks(connected, not_connected)
