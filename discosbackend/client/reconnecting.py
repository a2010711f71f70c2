"""A Twisted client that keeps its connection open: :class:`ReconnectingClient`.

It is built on :class:`twisted.application.internet.ClientService` with an
exponential backoff (``backoffPolicy``).  Every new connection is used only
once its greeting has been read, so :attr:`ReconnectingClient.server_version`
always describes the server now connected; a connection whose greeting is
bad or late is dropped and retried.  (The greeting is awaited beside
ClientService, not with its ``prepareConnection`` hook: ClientService
cannot handle a connection that closes while that hook is pending.)
ClientService counts a connection that was opened as a success, so a
server that keeps sending a bad greeting is retried at the first backoff
delay, not an ever longer one.

Requests are never sent twice: a request pending when the connection
drops fails with :class:`~discosbackend.client.errors.ConnectionLost` (the
backend may or may not have acted on it).  Requests issued while
disconnected wait for the next connection (``wait=True``, the default; the
request timeout covers the wait) or fail at once with ``ConnectionLost``
(``wait=False``).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from discosbackend.client.address import Address
from discosbackend.client.errors import ConnectionLost
from discosbackend.client.protocol import (DEFAULT_CONNECT_TIMEOUT, DBClientFactory,
                                           DBClientProtocol, client_endpoint, drop_connection,
                                           greeting_timeout_converter, timeout_converter)
from discosbackend.client.typed import Call, TypedCommands, format_argument
from discosbackend.grammar import Message, request
from discosbackend.reactor import or_global

__all__ = ["ReconnectingClient"]

T = TypeVar("T")
_log = Logger()


class _WatchingFactory(DBClientFactory):
    """Tells the client about each protocol it builds."""

    def __init__(self, watch: Callable[[DBClientProtocol], None], clock: IReactorTime) -> None:
        super().__init__(clock=clock)
        self._watch = watch

    def buildProtocol(self, addr: IAddress | None) -> DBClientProtocol:
        built = super().buildProtocol(addr)
        self._watch(built)
        return built


class ReconnectingClient(TypedCommands):
    """A client that reconnects, with backoff, whenever its connection drops.

    ``where`` is ``HOST:PORT``, an endpoint string or a client endpoint.
    ``timeout`` is the default per-request timeout (``None``: none).  The
    delay before retry *n* is ``min(initial_delay * factor**n, max_delay)``
    plus ``jitter()`` (random up to 1 s by default).  Call :meth:`open`
    to start connecting and :meth:`close` when done (``start()`` and
    ``stop()`` are the protocol's commands, as on every client).
    """

    def __init__(self, where: str | Address | IStreamClientEndpoint, *,
                 timeout: float | None = None, wait: bool = True,
                 initial_delay: float = 0.5, max_delay: float = 30.0, factor: float = 2.0,
                 jitter: Callable[[], float] | None = None,
                 connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
                 reactor: Any = None) -> None:
        self._reactor = or_global(reactor)
        self.where = where
        self.timeout = timeout
        self.wait = wait
        self.connect_timeout = connect_timeout
        #: How many connections have been made (greeting read) so far.
        self.connections = 0
        self._protocol: DBClientProtocol | None = None
        self._stopping = False
        self._waiting: list[defer.Deferred[DBClientProtocol]] = []
        policy = (backoffPolicy(initial_delay, max_delay, factor) if jitter is None
                  else backoffPolicy(initial_delay, max_delay, factor, jitter=jitter))
        endpoint = client_endpoint(where, self._reactor,
                                   connect_timeout or DEFAULT_CONNECT_TIMEOUT)
        factory = _WatchingFactory(self._connecting, self._reactor)
        self._service = ClientService(endpoint, factory, retryPolicy=policy,
                                      clock=self._reactor)

    # -- connection -----------------------------------------------------

    @property
    def protocol(self) -> DBClientProtocol | None:
        """The connection in use, or ``None`` while disconnected."""
        return self._protocol

    @property
    def server_version(self) -> str | None:
        """The protocol version the current connection's greeting announced."""
        return self._protocol.server_version if self._protocol is not None else None

    def open(self) -> None:
        """Start connecting (and reconnecting whenever the connection drops)."""
        self._stopping = False
        self._service.startService()

    def close(self) -> defer.Deferred[None]:
        """Disconnect and stop reconnecting; fires when the connection is closed.

        Requests waiting for a connection fail with ``ConnectionLost``.
        """
        self._stopping = True
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.errback(ConnectionLost(f"the client of {self.where} was closed"))
        return self._service.stopService()

    def when_connected(self) -> defer.Deferred[DBClientProtocol]:
        """Fires with the connected :class:`DBClientProtocol` (greeting read).

        That is the current connection if it is open, else the next one.
        """
        protocol = self._protocol
        if protocol is not None and protocol.is_open:
            return defer.succeed(protocol)
        if self._stopping:
            return defer.fail(ConnectionLost(f"the client of {self.where} is closed"))
        waiter: defer.Deferred[DBClientProtocol] = defer.Deferred(self._waiting.remove)
        self._waiting.append(waiter)
        return waiter

    def _connecting(self, protocol: DBClientProtocol) -> None:
        """A new connection: use it once its greeting is read, else drop it."""
        ready = protocol.when_ready()
        if self.connect_timeout:
            ready.addTimeout(self.connect_timeout, self._reactor,
                             onTimeoutCancel=greeting_timeout_converter(
                                 f"no greeting from {self.where} within "
                                 f"{self.connect_timeout:g} s"))
        ready.addCallbacks(self._greeted, drop_connection, errbackArgs=(protocol,))
        ready.addErrback(self._dropped)

    def _dropped(self, failure: Failure) -> None:
        # ClientService sees the connection close and tries again later.
        _log.info("connection to {where} dropped: {why}", where=self.where,
                  why=failure.getErrorMessage())

    def _greeted(self, protocol: DBClientProtocol) -> DBClientProtocol:
        self._protocol = protocol
        self.connections += 1
        protocol.when_closed().addCallback(self._closed, protocol)
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:  # in the order the requests were made
            waiter.callback(protocol)
        return protocol

    def _closed(self, _: None, protocol: DBClientProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    # -- requests -------------------------------------------------------

    def request(self, name: str, *arguments: object,
                timeout: float | None = None) -> defer.Deferred[Message]:
        """Send ``?name,arguments...``; fires with the ``ok`` reply message.

        Like :meth:`DBClientProtocol.request`, plus the waiting for a
        connection described in the module's documentation.
        """
        message = request(name, *(format_argument(argument) for argument in arguments))
        return self.send_request(message, timeout=timeout)

    def send_request(self, message: Message, *,
                     timeout: float | None = None) -> defer.Deferred[Message]:
        """Send a request :class:`~discosbackend.grammar.Message`; see :meth:`request`."""
        if not message.is_request():
            raise ValueError(f"not a request: {message}")
        protocol = self._protocol
        sent: defer.Deferred[Message]
        if protocol is not None and protocol.is_open:
            sent = protocol.send_request(message)
        elif not self.wait or self._stopping:
            return defer.fail(ConnectionLost(f"{message.name}: not connected to {self.where}"))
        else:
            sent = self.when_connected().addCallback(
                lambda connected: connected.send_request(message))
        if timeout is None:
            timeout = self.timeout
        if timeout is not None:
            sent.addTimeout(timeout, self._reactor,
                            onTimeoutCancel=timeout_converter(message, timeout))
        return sent

    def _perform(self, call: Call[T]) -> defer.Deferred[T]:
        return self.request(call.name, *call.arguments).addCallback(call.convert)
