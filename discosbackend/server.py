"""Serve a handler: ``run_server`` (blocking) and ``listen`` (non-blocking).

Where to listen is a port number or a Twisted endpoint string such as
``tcp:8978:interface=127.0.0.1`` or ``unix:/tmp/backend.sock``::

    from discosbackend import server
    from discosbackend.handlers import DBProtocolHandler
    server.run_server(8978, DBProtocolHandler(MyBackend()))
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from discosbackend.handlers import Handler
from discosbackend.protocol import DEFAULT_LINGER, DEFAULT_MAX_LINE, DBProtocolFactory
from discosbackend.reactor import or_global

__all__ = ["DEFAULT_PORT", "endpoint_description", "listen", "stop", "run_until_stopped",
           "run_server"]

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
           log_requests: bool = False, linger: float | None = DEFAULT_LINGER,
           reactor: Any = None) -> Deferred[IListeningPort]:
    """Start serving ``handler``; the Deferred fires with the listening port.

    ``port.factory`` is the :class:`~discosbackend.protocol.DBProtocolFactory`
    (its ``connections``, ``close_connections()``; the options are its own).
    Stop with :func:`stop`.  A bad endpoint string raises ``ValueError`` at
    once; a port that cannot be bound fails the Deferred with
    ``CannotListenError``.
    """
    reactor = or_global(reactor)
    endpoint = serverFromString(reactor, endpoint_description(where, interface))
    factory = DBProtocolFactory(handler, max_line=max_line, timeout=timeout, clock=reactor,
                                log_requests=log_requests, linger=linger)
    return endpoint.listen(factory)


def stop(port: IListeningPort) -> Deferred[None]:
    """Close ``port``'s connections and stop listening (the handler's ``stop()`` runs)."""
    factory: DBProtocolFactory = port.factory  # type: ignore[attr-defined]
    closing = factory.close_connections()
    closing.addCallback(lambda _: port.stopListening())
    return closing  # type: ignore[return-value]  # fires with stopListening's None


def run_until_stopped(listening: Sequence[Deferred[IListeningPort]], *,
                      ready: Callable[[list[IListeningPort]], object],
                      reactor: Any = None) -> None:
    """Run the reactor, serving the ports ``listening`` fire with, until it stops.

    Once every port listens, ``ready(ports)`` is called (ports in the order
    given); on shutdown (SIGINT, SIGTERM or ``reactor.stop()``) each is
    stopped with :func:`stop`.  If one fails to listen, the others are
    stopped, the reactor stops (or never runs) and the first error is raised.
    """
    reactor = or_global(reactor)
    problems: list[Failure] = []

    def started(results: list[tuple[bool, Any]]) -> None:
        ports = [value for success, value in results if success]
        problems.extend(value for success, value in results if not success)
        if problems:
            for port in ports:
                port.stopListening()
            if reactor.running:
                reactor.stop()
            return
        # Once the reactor runs, not before: its signal handlers are then in
        # place, so a SIGTERM sent as soon as ready() announces the ports
        # (as a supervisor may) shuts down cleanly instead of killing.
        reactor.callWhenRunning(ready, ports)
        reactor.addSystemEventTrigger("before", "shutdown", _stop_all, ports)

    DeferredList(list(listening), consumeErrors=True).addCallback(started)
    if not problems:  # a port may have failed before the reactor ran
        reactor.run()
    if problems:
        problems[0].raiseException()


def _stop_all(ports: list[IListeningPort]) -> Deferred[list[None]]:
    _log.info("stopping")
    return gatherResults([stop(port) for port in ports])


def run_server(port: int | str, handler: Handler, *, interface: str | None = None,
               max_line: int = DEFAULT_MAX_LINE, timeout: float | None = None,
               log_requests: bool = False, linger: float | None = DEFAULT_LINGER,
               reactor: Any = None) -> None:
    """Serve ``handler`` until SIGINT/SIGTERM (or ``reactor.stop()``).

    ``port`` is a port number or an endpoint string; the options are
    :func:`listen`'s.  On shutdown the connections are closed and the
    handler's ``stop()`` is called.  Raises the listening error (e.g.
    ``CannotListenError``) if the port cannot be bound, after the reactor
    has stopped.
    """
    def announce(ports: list[IListeningPort]) -> None:
        _log.info("serving {handler} on {address}", handler=type(handler).__name__,
                  address=ports[0].getHost())

    run_until_stopped([listen(port, handler, interface=interface, max_line=max_line,
                              timeout=timeout, log_requests=log_requests, linger=linger,
                              reactor=reactor)],
                      ready=announce, reactor=reactor)
