"""Serve a handler: ``run_server`` (blocking) and ``listen`` (non-blocking).

Where to listen is a port number (on all interfaces, as discos-backend 1.4
did) or a Twisted endpoint string such as ``tcp:8978:interface=127.0.0.1``
or ``unix:/tmp/backend.sock``::

    from discosbackend import server
    from discosbackend.handlers import DBProtocolHandler
    server.run_server(8978, DBProtocolHandler(MyBackend()))
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, Sequence

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import (FilteringLogObserver, Logger, LogLevel, LogLevelFilterPredicate,
                            globalLogBeginner, textFileLogObserver)
from twisted.python.failure import Failure

from discosbackend.handlers import Handler
from discosbackend.protocol import DBProtocolFactory
from discosbackend.reactor import global_reactor, or_global

__all__ = ["DEFAULT_PORT", "DEFAULT_BACKLOG", "DEFAULT_GRACE", "endpoint_description",
           "listen", "stop", "run_until_stopped", "run_server", "describe_address",
           "describe_handler"]

#: The port DISCOS backends conventionally listen on.
DEFAULT_PORT = 8978
#: Connections the kernel queues before they are accepted.
DEFAULT_BACKLOG = 1024
#: Seconds connections get at shutdown to read their last replies.
DEFAULT_GRACE = 5.0

_log = Logger()


def endpoint_description(where: int | str, interface: str | None = None,
                         backlog: int | None = None) -> str:
    """A server endpoint string for a port number or an endpoint string.

    ``endpoint_description(8978, "127.0.0.1")`` is
    ``tcp:8978:interface=127.0.0.1``; a string that is not a plain number is
    returned as it is (``interface`` then must be ``None``).  ``backlog``,
    the length of the kernel's queue of connections not accepted yet, is
    added to a ``tcp``, ``tcp6`` or ``unix`` endpoint that does not say it.
    """
    if isinstance(where, int) or (isinstance(where, str) and where.isdigit()):
        port = int(where)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range (0 to 65535)")
        description = f"tcp:{port}"
        if interface:
            description += ":interface=" + interface.replace(":", "\\:")
    elif interface:
        raise ValueError("give an interface with a port number, not with an endpoint string")
    else:
        description = where
    if (backlog is not None and description.split(":", 1)[0] in ("tcp", "tcp6", "unix")
            and "backlog=" not in description):
        description += f":backlog={backlog}"
    return description


def listen(where: int | str, handler: Handler, *, interface: str | None = None,
           backlog: int = DEFAULT_BACKLOG, reactor: Any = None,
           **options: Any) -> Deferred[IListeningPort]:
    """Start serving ``handler``; the Deferred fires with the listening port.

    ``options`` are those of :class:`~discosbackend.protocol.DBProtocolFactory`:
    ``max_line``, ``timeout``, ``log_requests``, ``max_unsent``,
    ``max_pending``, ``max_connections``, ``allow``, ``idle_timeout``,
    ``linger`` and ``watchdog`` (warn when answering requests blocks the
    reactor longer than this many seconds; ``None``: never).
    ``port.factory`` is that factory (its ``connections``,
    ``close_connections()``).  Stop with :func:`stop`.  A bad endpoint
    string raises ``ValueError`` at once; a port that cannot be bound fails
    the Deferred with ``CannotListenError``, a backend whose ``open()``
    fails with :class:`~discosbackend.errors.OpenError`.
    """
    reactor = or_global(reactor)
    endpoint = serverFromString(reactor, endpoint_description(where, interface, backlog))
    return endpoint.listen(DBProtocolFactory(handler, clock=reactor, **options))


def stop(port: IListeningPort, grace: float | None = DEFAULT_GRACE) -> Deferred[None]:
    """Stop serving ``port``: stop listening at once, then close its connections.

    Requests still waiting are answered ``fail,shutting down``; connections
    whose replies are not read within ``grace`` seconds are dropped.  The
    handler's ``stop()`` runs once the port no longer listens.  Fires when
    every connection is closed.
    """
    factory: DBProtocolFactory = port.factory  # type: ignore[attr-defined]
    steps: list[Deferred[Any]] = [defer.maybeDeferred(port.stopListening),
                                  factory.close_connections(grace)]
    return gatherResults(steps).addCallback(lambda _: None)


def run_until_stopped(listening: Sequence[Deferred[IListeningPort]], *,
                      ready: Callable[[list[IListeningPort]], object],
                      grace: float | None = DEFAULT_GRACE, reactor: Any = None) -> None:
    """Run the reactor, serving the ports ``listening`` fire with, until it stops.

    Once every port listens, ``ready(ports)`` is called (ports in the order
    given); on shutdown (SIGINT, SIGTERM or ``reactor.stop()``) each is
    stopped with :func:`stop`, giving connections ``grace`` seconds to read
    their last replies.  A second SIGINT or SIGTERM exits at once (status
    1).  If a port fails to listen, the others are stopped, the reactor
    stops (or never runs) and the first error is raised.
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
        reactor.addSystemEventTrigger("before", "shutdown", _stop_all, ports, grace)

    DeferredList(list(listening), consumeErrors=True).addCallback(started)
    if reactor is global_reactor():  # not in tests that run a fake reactor
        reactor.callWhenRunning(_handle_signals, reactor)
    if not problems:  # a port may have failed before the reactor ran
        reactor.run()
    if problems:
        problems[0].raiseException()


def _handle_signals(reactor: Any) -> None:
    """SIGINT and SIGTERM stop the reactor cleanly; a second one exits at once.

    They replace Twisted's own handlers (installed just before), whose
    ``reactor.stop()`` on a second signal logs a ``ReactorNotRunning``
    traceback while the first shutdown is still under way.
    """
    signals: list[int] = []

    def received(number: int, _frame: object) -> None:
        signals.append(number)
        if len(signals) > 1:
            os.write(2, b"discos-backend: second signal, exiting now\n")
            os._exit(1)  # pylint: disable=protected-access  # no cleanup: that was the first
        reactor.callFromThread(_stop, reactor, signal.Signals(number).name)

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, received)


def _stop(reactor: Any, why: str) -> None:
    _log.info("Received {signal}, shutting down.", signal=why)
    if reactor.running:
        reactor.stop()


def _stop_all(ports: list[IListeningPort], grace: float | None) -> Deferred[list[None]]:
    _log.info("stopping")
    return gatherResults([stop(port, grace) for port in ports])


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
               backlog: int = DEFAULT_BACKLOG, grace: float | None = DEFAULT_GRACE,
               reactor: Any = None, **options: Any) -> None:
    """Serve ``handler`` until SIGINT/SIGTERM (or ``reactor.stop()``).

    ``port`` is a port number, on all interfaces unless ``interface`` is
    given (as discos-backend 1.4 did), or an endpoint string; ``options``
    are :func:`listen`'s.  Once listening it logs one line naming what it
    serves and where; if the application has not begun Twisted logging, it
    begins logging to stderr (info and up).  There is no per-request
    timeout unless ``timeout`` is given.  On shutdown the port stops
    listening, requests still waiting are answered ``fail,shutting down``,
    connections get ``grace`` seconds to read their replies, and the
    handler's ``stop()`` is called.  Raises the listening error (e.g.
    ``CannotListenError``, or :class:`~discosbackend.errors.OpenError`)
    after the reactor has stopped.
    """
    def announce(ports: list[IListeningPort]) -> None:
        _log.info("serving {handler} on {address}", handler=describe_handler(handler),
                  address=describe_address(ports[0].getHost()))

    _log_to_stderr_unless_logging()
    run_until_stopped([listen(port, handler, interface=interface, backlog=backlog,
                              reactor=reactor, **options)],
                      ready=announce, grace=grace, reactor=reactor)
