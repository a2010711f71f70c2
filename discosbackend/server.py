"""Serve a handler: ``run_server`` (blocking) and ``listen`` (non-blocking).

Where to listen is a port number or a Twisted endpoint string such as
``tcp:8978:interface=127.0.0.1`` or ``unix:/tmp/backend.sock``::

    from discosbackend import server
    from discosbackend.handlers import DBProtocolHandler
    server.run_server(8978, DBProtocolHandler(MyBackend()))
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from discosbackend.handlers import Handler
from discosbackend.protocol import DEFAULT_MAX_LINE, DBProtocolFactory

__all__ = ["DEFAULT_PORT", "endpoint_description", "listen", "stop", "run_server"]

#: The port DISCOS backends conventionally listen on.
DEFAULT_PORT = 8978

_log = Logger()


def endpoint_description(where: int | str, interface: str | None = None) -> str:
    """A server endpoint string for a port number or an endpoint string.

    ``endpoint_description(8978, "127.0.0.1")`` is
    ``tcp:8978:interface=127.0.0.1``; a string that is not a plain number is
    returned as it is (``interface`` then must be ``None``).
    """
    if isinstance(where, int) or (isinstance(where, str) and where.isdigit()):
        port = int(where)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range (0 to 65535)")
        description = f"tcp:{port}"
        if interface:
            description += ":interface=" + interface.replace(":", "\\:")
        return description
    if interface:
        raise ValueError("give an interface with a port number, not with an endpoint string")
    return where


def listen(where: int | str, handler: Handler, *, interface: str | None = None,
           max_line: int = DEFAULT_MAX_LINE, timeout: float | None = None,
           log_requests: bool = False, reactor: Any = None) -> defer.Deferred:
    """Start serving ``handler``; the Deferred fires with the listening port.

    ``port.factory`` is the :class:`~discosbackend.protocol.DBProtocolFactory`
    (its ``connections``, ``close_connections()``).  Stop with :func:`stop`.
    A bad endpoint string raises ``ValueError`` at once; a port that cannot
    be bound fails the Deferred with ``CannotListenError``.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    endpoint = serverFromString(reactor, endpoint_description(where, interface))
    factory = DBProtocolFactory(handler, max_line=max_line, timeout=timeout, clock=reactor,
                                log_requests=log_requests)
    return endpoint.listen(factory)


def stop(port: IListeningPort) -> defer.Deferred:
    """Close ``port``'s connections and stop listening (the handler's ``stop()`` runs)."""
    factory: DBProtocolFactory = port.factory  # type: ignore[attr-defined]
    closing = factory.close_connections()
    closing.addCallback(lambda _: port.stopListening())
    return closing


def run_server(port: int | str, handler: Handler, *, interface: str | None = None,
               max_line: int = DEFAULT_MAX_LINE, timeout: float | None = None,
               log_requests: bool = False, reactor: Any = None) -> None:
    """Serve ``handler`` until SIGINT/SIGTERM (or ``reactor.stop()``).

    ``port`` is a port number or an endpoint string.  On shutdown the
    connections are closed and the handler's ``stop()`` is called.  Raises
    the listening error (e.g. ``CannotListenError``) if the port cannot be
    bound, after the reactor has stopped.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    problems: list[Failure] = []

    def listening(listening_port: IListeningPort) -> None:
        _log.info("serving {handler} on {address}", handler=type(handler).__name__,
                  address=listening_port.getHost())
        reactor.addSystemEventTrigger("before", "shutdown", stop, listening_port)

    def failed(failure: Failure) -> None:
        problems.append(failure)
        if reactor.running:
            reactor.stop()

    starting = listen(port, handler, interface=interface, max_line=max_line,
                      timeout=timeout, log_requests=log_requests, reactor=reactor)
    starting.addCallbacks(listening, failed)
    if not problems:
        reactor.run()
    if problems:
        problems[0].raiseException()
