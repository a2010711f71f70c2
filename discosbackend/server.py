"""Serve a handler: ``run_server`` (blocking) and ``listen`` (non-blocking).

Where to listen is a port number (on all interfaces, as discos-backend 1.4
did) or a Twisted endpoint string such as ``tcp:8978:interface=127.0.0.1``
or ``unix:/tmp/backend.sock``::

    from discosbackend import server
    from discosbackend.handlers import DBProtocolHandler
    server.run_server(8978, DBProtocolHandler(MyBackend()))
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import (FilteringLogObserver, Logger, LogLevel, LogLevelFilterPredicate,
                            globalLogBeginner, textFileLogObserver)
from twisted.python.failure import Failure

from discosbackend.handlers import Handler
from discosbackend.protocol import DEFAULT_MAX_LINE, DBProtocolFactory
from discosbackend.reactor import or_global
from discosbackend.watchdog import DEFAULT_THRESHOLD

__all__ = ["DEFAULT_PORT", "endpoint_description", "listen", "stop", "run_until_stopped",
           "run_server", "describe_address", "describe_handler"]

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
           log_requests: bool = False, watchdog: float | None = DEFAULT_THRESHOLD,
           reactor: Any = None) -> Deferred[IListeningPort]:
    """Start serving ``handler``; the Deferred fires with the listening port.

    ``port.factory`` is the :class:`~discosbackend.protocol.DBProtocolFactory`
    (its ``connections``, ``close_connections()``).  Stop with :func:`stop`.
    A bad endpoint string raises ``ValueError`` at once; a port that cannot
    be bound fails the Deferred with ``CannotListenError``, a backend whose
    ``open()`` fails with :class:`~discosbackend.errors.OpenError`.
    ``watchdog``: warn when answering requests blocks the reactor longer
    than this many seconds (``None``: never).
    """
    reactor = or_global(reactor)
    endpoint = serverFromString(reactor, endpoint_description(where, interface))
    factory = DBProtocolFactory(handler, max_line=max_line, timeout=timeout, clock=reactor,
                                log_requests=log_requests, watchdog=watchdog)
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
        ready(ports)
        reactor.addSystemEventTrigger("before", "shutdown", _stop_all, ports)

    DeferredList(list(listening), consumeErrors=True).addCallback(started)
    if not problems:  # a port may have failed before the reactor ran
        reactor.run()
    if problems:
        problems[0].raiseException()


def _stop_all(ports: list[IListeningPort]) -> Deferred[list[None]]:
    _log.info("stopping")
    return gatherResults([stop(port) for port in ports])


def describe_address(address: Any) -> str:
    """A listening address as text: ``tcp:127.0.0.1:8978``, ``unix:/path``..."""
    if isinstance(address, IPv4Address):
        return f"tcp:{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"tcp6:[{address.host}]:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        return "unix:" + (name.decode("utf-8", "replace") if isinstance(name, bytes)
                          else str(name))
    return str(address)


def describe_handler(handler: Handler) -> str:
    """What ``handler`` serves: ``MyBackend with DBProtocolHandler (threaded)``."""
    text = type(handler).__name__
    backend = getattr(handler, "backend", None)
    if backend is not None:
        text = f"{type(backend).__name__} with {text}"
    if getattr(handler, "threaded", False):
        text += " (threaded)"
    return text


def _log_to_stderr_unless_logging() -> None:
    """Begin logging to stderr (info and up) unless the application already began."""
    # Until someone calls globalLogBeginner.beginLoggingTo (directly, or
    # through twisted.python.log.startLogging), Twisted only buffers events
    # in this temporary observer: nobody sees them.
    if getattr(globalLogBeginner, "_temporaryObserver", None) is None:
        return
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr),
                                    [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def run_server(port: int | str, handler: Handler, *, interface: str | None = None,
               max_line: int = DEFAULT_MAX_LINE, timeout: float | None = None,
               log_requests: bool = False, watchdog: float | None = DEFAULT_THRESHOLD,
               reactor: Any = None) -> None:
    """Serve ``handler`` until SIGINT/SIGTERM (or ``reactor.stop()``).

    ``port`` is a port number, on all interfaces unless ``interface`` is
    given (as discos-backend 1.4 did), or an endpoint string.  Once
    listening it logs one line naming what it serves and where; if the
    application has not begun Twisted logging, it begins logging to stderr
    (info and up).  There is no per-request timeout unless ``timeout`` is
    given.  On shutdown the connections are closed and the handler's
    ``stop()`` is called.  Raises the listening error (e.g.
    ``CannotListenError``, or :class:`~discosbackend.errors.OpenError`)
    after the reactor has stopped.
    """
    def announce(ports: list[IListeningPort]) -> None:
        _log.info("serving {handler} on {address}", handler=describe_handler(handler),
                  address=describe_address(ports[0].getHost()))

    _log_to_stderr_unless_logging()
    run_until_stopped([listen(port, handler, interface=interface, max_line=max_line,
                              timeout=timeout, log_requests=log_requests, watchdog=watchdog,
                              reactor=reactor)],
                      ready=announce, reactor=reactor)
