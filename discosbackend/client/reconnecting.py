"""A Twisted client that keeps its connection open: :class:`ReconnectingClient`.

It is built on :class:`twisted.application.internet.ClientService` with an
exponential backoff (``backoffPolicy``).  Every new connection is used only
once its greeting has been read, so :attr:`ReconnectingClient.server_version`
always describes the server now connected.

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
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from discosbackend.client.address import Address
from discosbackend.client.errors import ConnectionLost
from discosbackend.client.protocol import (DEFAULT_CONNECT_TIMEOUT, DBClientFactory,
                                           DBClientProtocol, _drop, _no_greeting, _reactor,
                                           client_endpoint, timeout_converter)
from discosbackend.client.typed import Call, TypedCommands, format_argument
from discosbackend.grammar import Message, request

__all__ = ["ReconnectingClient"]

T = TypeVar("T")


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
        self._reactor = reactor if reactor is not None else _reactor()
        self.where = where
        self.timeout = timeout
        self.wait = wait
        self.connect_timeout = connect_timeout
        #: How many connections have been made (greeting read) so far.
        self.connections = 0
        self._protocol: DBClientProtocol | None = None
        self._stopping = False
        policy = (backoffPolicy(initial_delay, max_delay, factor) if jitter is None
                  else backoffPolicy(initial_delay, max_delay, factor, jitter=jitter))
        endpoint = client_endpoint(where, self._reactor,
                                   connect_timeout or DEFAULT_CONNECT_TIMEOUT)
        self._service = ClientService(endpoint, DBClientFactory(clock=self._reactor),
                                      retryPolicy=policy, clock=self._reactor,
                                      prepareConnection=self._prepare)

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

    def close(self) -> defer.Deferred:
        """Disconnect and stop reconnecting; fires when the connection is closed.

        Requests waiting for a connection fail with ``ConnectionLost``.
        """
        self._stopping = True
        return self._service.stopService()

    def when_connected(self) -> defer.Deferred:
        """Fires with the connected :class:`DBClientProtocol` (greeting read)."""
        return self._service.whenConnected()

    def _prepare(self, protocol: DBClientProtocol) -> defer.Deferred:
        ready = protocol.when_ready()
        if self.connect_timeout:
            ready.addTimeout(self.connect_timeout, self._reactor, onTimeoutCancel=_no_greeting(
                f"no greeting from {self.where} within {self.connect_timeout:g} s"))
        ready.addCallbacks(self._greeted, _drop, errbackArgs=(protocol,))
        return ready

    def _greeted(self, protocol: DBClientProtocol) -> DBClientProtocol:
        self._protocol = protocol
        self.connections += 1
        protocol.when_closed().addCallback(self._closed, protocol)
        return protocol

    def _closed(self, _: None, protocol: DBClientProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    # -- requests -------------------------------------------------------

    def request(self, name: str, *arguments: object,
                timeout: float | None = None) -> defer.Deferred:
        """Send ``?name,arguments...``; fires with the ``ok`` reply message.

        Like :meth:`DBClientProtocol.request`, plus the waiting for a
        connection described in the module's documentation.
        """
        message = request(name, *(format_argument(argument) for argument in arguments))
        return self.send_request(message, timeout=timeout)

    def send_request(self, message: Message, *, timeout: float | None = None) -> defer.Deferred:
        """Send a request :class:`~discosbackend.grammar.Message`; see :meth:`request`."""
        if not message.is_request():
            raise ValueError(f"not a request: {message}")
        protocol = self._protocol
        if protocol is not None and protocol.is_open:
            sent = protocol.send_request(message)
        elif not self.wait or self._stopping:
            return defer.fail(ConnectionLost(f"{message.name}: not connected to {self.where}"))
        else:
            sent = self._service.whenConnected()
            sent.addCallbacks(lambda connected: connected.send_request(message),
                              self._not_connected, errbackArgs=(message,))
        if timeout is None:
            timeout = self.timeout
        if timeout is not None:
            sent.addTimeout(timeout, self._reactor,
                            onTimeoutCancel=timeout_converter(message, timeout))
        return sent

    def _not_connected(self, failure: Failure, message: Message) -> Failure:
        if self._stopping and failure.check(defer.CancelledError):
            return Failure(ConnectionLost(f"{message.name}: the client was stopped"))
        return failure

    def _perform(self, call: Call[T]) -> defer.Deferred:
        return self.request(call.name, *call.arguments).addCallback(call.convert)
