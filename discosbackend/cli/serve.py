"""``discos-backend serve``: serve the backend simulator, or your own backend.

With no ``--backend`` it serves :class:`~discosbackend.simulator.BackendSimulator`
and opens a control endpoint (loopback only by default) that injects faults
into it.  ``--backend module:NAME`` serves a backend class, a factory
(any callable returning a backend) or a handler instead, made with the
``-o KEY=VALUE`` options as keyword arguments.  It prints one line saying
what it serves and where, logs to stderr, and stops cleanly on Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                            PredicateResult, globalLogBeginner, textFileLogObserver)
from twisted.python.failure import Failure

from discosbackend import server
from discosbackend.cli import CommandLineError
from discosbackend.commands import COMMANDS, VERSION
from discosbackend.errors import OpenError
from discosbackend.faults import CONTROL_COMMANDS, ControlHandler
from discosbackend.handlers import DBProtocolHandler, Handler
from discosbackend.protocol import DEFAULT_MAX_LINE
from discosbackend.server import describe_address
from discosbackend.simulator import BackendSimulator, SimulatorHandler

__all__ = ["add_parser", "run", "load_backend", "backend_option", "Setup", "build", "serve",
           "describe_address", "DEFAULT_SECTIONS", "DEFAULT_TIMEOUT", "LOOPBACK"]

#: Sections of the simulator when ``--sections`` is not given.
DEFAULT_SECTIONS = 2
#: ``--timeout`` when not given, seconds: below the real DISCOS client's own
#: 100 s, so that a hung backend gets a clean ``fail`` instead of a reconnect.
DEFAULT_TIMEOUT = 60.0
#: Where the public port (by default) and the control port listen.
LOOPBACK = "127.0.0.1"
_AUTO = "auto"
_OFF = ("none", "off")
_TCP_PORT_RE = re.compile(r"tcp6?:(?:port=)?([0-9]+)(?::|$)")
_METHODS = tuple(command.method for command in COMMANDS.values() if command.method)
_INTEGER_RE = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOLEANS = {"true": True, "false": False}


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} out of range 0..65535")
    return port


def _control_port(text: str) -> int | str | None:
    if text.lower() in _OFF:
        return None
    if text.lower() == _AUTO:
        return _AUTO
    return _port(text)


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
        return value
    return parse


def _seconds(text: str) -> float | None:
    """A timeout in seconds, ``0`` meaning none (``None``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds >= 0")
    return value or None


def backend_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``-o`` as a keyword argument.

    The value is an ``int`` when written as one (``7000``, not ``007``), a
    ``float`` when written with a decimal point (``0.5``, ``1.5e3``), a
    ``bool`` for ``true``/``false`` (any case), else the text as it is
    (``10.0.0.5``, ``SK00``, ``007``).
    """
    key, equals, value = text.partition("=")
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE, KEY a Python name")
    if _INTEGER_RE.fullmatch(value):
        return key, int(value)
    if _FLOAT_RE.fullmatch(value):
        return key, float(value)
    return key, _BOOLEANS.get(value.lower(), value)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve", help="serve the backend simulator (or your own backend)",
        description="Serve a DISCOS backend: the simulator unless --backend is given. "
                    "Prints one line with the addresses once listening; stops on "
                    "Ctrl-C or SIGTERM.",
        epilog="fault injection (simulator): send these requests to the control port,\n"
               "e.g. printf '?fail,start,hardware-error\\n' | nc -q1 127.0.0.1 8979\n"
               + "\n".join(f"  ?{command.usage().replace(' ', ',')}  {command.summary}"
                           for name, command in CONTROL_COMMANDS.items() if name != VERSION),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=_port, default=server.DEFAULT_PORT,
                        help="TCP port to listen on, 0 for any free one "
                             f"(default {server.DEFAULT_PORT})")
    parser.add_argument("--interface", default=LOOPBACK,
                        help=f"address to listen on (default {LOOPBACK}; 0.0.0.0 for all)")
    parser.add_argument("--endpoint", metavar="STRING",
                        help="Twisted endpoint string to listen on instead of --port and "
                             "--interface, e.g. tcp:8978:interface=0.0.0.0 or "
                             "unix:/tmp/backend.sock")
    parser.add_argument("--backend", metavar="MODULE:NAME",
                        help="serve this instead of the simulator: a backend class, a factory "
                             "(any callable returning a backend or a handler) or a handler; "
                             "the current directory is importable")
    parser.add_argument("-o", "--backend-option", type=backend_option, action="append",
                        default=[], metavar="KEY=VALUE", dest="backend_options",
                        help="keyword argument for the backend class or factory (repeatable); "
                             "7000 is an int, 0.5 a float, true/false a bool, anything else "
                             "text")
    parser.add_argument("--threaded", action="store_true",
                        help="call the backend's methods in a worker thread, one at a time "
                             "in arrival order: for backends that block (hardware I/O, sleep)")
    parser.add_argument("--sections", type=_positive(int), metavar="N",
                        help=f"sections of the simulator (default {DEFAULT_SECTIONS})")
    parser.add_argument("--control-port", type=_control_port, default=_AUTO, metavar="N",
                        help="fault-injection control port of the simulator: default the "
                             "public port + 1 (any free port when that is 0); 0 for any free "
                             "port; 'none' to disable")
    parser.add_argument("--control-interface", default=LOOPBACK, metavar="ADDRESS",
                        help=f"address the control port listens on (default {LOOPBACK})")
    parser.add_argument("--max-line", type=_positive(int), default=DEFAULT_MAX_LINE,
                        metavar="BYTES",
                        help=f"longest request line accepted (default {DEFAULT_MAX_LINE})")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                        help="answer fail,timeout when the backend takes longer than S "
                             f"seconds (default {DEFAULT_TIMEOUT:g}; 0: no limit)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug messages and every request and reply")
    parser.set_defaults(run=run)
    return parser


def load_backend(spec: str) -> Any:
    """Import what ``module:NAME`` names (``NAME`` may be dotted).

    It may be a backend class, a factory (any other callable), a
    :class:`~discosbackend.handlers.Handler` class or instance, or a backend
    object.  Raises :class:`CommandLineError` when the module or the
    attribute is missing, or the object is none of these.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise CommandLineError(f"--backend {spec!r}: use module:NAME")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise CommandLineError(f"--backend {spec!r}: no module named {error.name!r}") from None
    except Exception as error:  # pylint: disable=broad-except
        raise CommandLineError(f"--backend {spec!r}: cannot import {module_name!r}: "
                               f"{type(error).__name__}: {error}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CommandLineError(
                f"--backend {spec!r}: {module_name!r} has no attribute {attribute!r}") from None
    if isinstance(target, type):
        if not issubclass(target, Handler) and not _is_backend(target):
            raise CommandLineError(f"--backend {spec!r}: not a backend (no command methods; "
                                   "subclass discosbackend.backend.Backend)")
    elif not callable(target) and not isinstance(target, Handler) and not _is_backend(target):
        raise CommandLineError(f"--backend {spec!r}: not a backend class, factory or handler")
    return target


def _is_backend(target: Any) -> bool:
    """Whether ``target`` (a class or an object) has command methods."""
    return any(callable(getattr(target, method, None)) for method in _METHODS)


def _make(target: Any, options: dict[str, Any]) -> Any:
    """Call the class or factory ``target`` with ``options``; an object is taken as it is."""
    name = getattr(target, "__name__", type(target).__name__)
    if isinstance(target, Handler) or not callable(target):
        if options:
            raise CommandLineError(f"-o applies to a class or factory, and {name} is "
                                   "already made")
        return target
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind_partial(**options)
        except TypeError:
            takes = [parameter.name for parameter in signature.parameters.values()
                     if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD,
                                           parameter.KEYWORD_ONLY)]
            unknown = next(key for key in options if key not in takes)
            raise CommandLineError(f"-o {unknown}: {name} takes no option {unknown!r} "
                                   f"(it takes {', '.join(takes) or 'none'})") from None
    try:
        return target(**options)
    except Exception as error:  # pylint: disable=broad-except
        raise CommandLineError(f"cannot create {name}: "
                               f"{type(error).__name__}: {error}") from None


@dataclass
class Setup:
    """What ``serve`` will serve, and where (endpoint descriptions)."""

    backend: Any  # None when a handler is served as it is
    handler: Handler
    public: str
    control: str | None = None
    control_handler: Handler | None = None
    max_line: int = DEFAULT_MAX_LINE
    timeout: float | None = None
    verbose: bool = False

    def describe(self) -> str:
        """What is served, e.g. ``BackendSimulator (2 sections)``, ``MyBackend (threaded)``."""
        served: Any = self.handler if self.backend is None else self.backend
        text = (served.describe() if callable(getattr(served, "describe", None))
                else type(served).__name__)
        return text + (" (threaded)" if getattr(self.handler, "threaded", False) else "")


def _requested_port(args: argparse.Namespace) -> int | None:
    if args.endpoint is None:
        return int(args.port)
    match = _TCP_PORT_RE.match(args.endpoint)
    return int(match.group(1)) if match else None


def _control_description(args: argparse.Namespace) -> str | None:
    port = args.control_port
    if port == _AUTO:
        public = _requested_port(args)
        if public is None:
            return None
        if public == 65535:
            raise CommandLineError("no default control port after 65535: give --control-port")
        port = public + 1 if public else 0
    if port is None:
        return None
    return server.endpoint_description(port, args.control_interface)


def build(args: argparse.Namespace) -> Setup:
    """Check the arguments and create the backend and handlers.

    Raises :class:`CommandLineError` on anything wrong.
    """
    if args.endpoint is not None:
        public = args.endpoint
    else:
        public = server.endpoint_description(args.port, args.interface)
    target = BackendSimulator if args.backend is None else load_backend(args.backend)
    options = dict(args.backend_options)
    if len(options) < len(args.backend_options):
        raise CommandLineError("-o: each KEY once")
    if isinstance(target, type) and issubclass(target, BackendSimulator):
        if args.sections is not None and "sections" in options:
            raise CommandLineError("give --sections or -o sections, not both")
        options.setdefault("sections", args.sections or DEFAULT_SECTIONS)
    elif args.sections is not None:
        raise CommandLineError("--sections applies to the simulator only")
    made = _make(target, options)
    if isinstance(made, Handler):
        if args.threaded and not getattr(made, "threaded", False):
            raise CommandLineError("--threaded applies to a backend: make your handler with "
                                   "threaded=True")
        handler, backend = made, getattr(made, "backend", None)
    elif not _is_backend(made):
        raise CommandLineError(f"--backend {args.backend!r} made {type(made).__name__}, not a "
                               "backend (no command methods)")
    else:
        kind = SimulatorHandler if isinstance(made, BackendSimulator) else DBProtocolHandler
        handler, backend = kind(made, threaded=args.threaded), made
    setup = Setup(backend, handler, public, max_line=args.max_line, timeout=args.timeout,
                  verbose=args.verbose)
    if isinstance(handler, SimulatorHandler):
        setup.control = _control_description(args)
        if setup.control is not None:
            setup.control_handler = ControlHandler(handler.faults)
    elif args.control_port not in (_AUTO, None):
        raise CommandLineError("--control-port applies to the simulator only")
    return setup


def _not_factory_noise(event: dict[str, Any]) -> PredicateResult:
    """Drop Twisted's "Starting/Stopping factory <object at 0x...>" lines."""
    text = str(event.get("log_format") or "")
    if text.startswith(("Starting factory", "Stopping factory")):
        return PredicateResult.no
    return PredicateResult.maybe


def _begin_logging(verbose: bool) -> None:
    level = LogLevel.debug if verbose else LogLevel.info
    predicates: list[Any] = [LogLevelFilterPredicate(defaultLogLevel=level)]
    if not verbose:
        predicates.append(_not_factory_noise)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), predicates)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _listen_error(failure: Failure, description: str) -> str:
    error = failure.value
    if isinstance(error, OpenError):
        return str(error)  # it says plainly which backend failed, and how
    if isinstance(error, CannotListenError):
        reason = error.socketError
        text = getattr(reason, "strerror", None) or str(reason)
        return f"cannot listen on {description}: {text}"
    return f"cannot listen on {description}: {failure.getErrorMessage()}"


def serve(setup: Setup, reactor: Any = None, out: TextIO | None = None) -> int:
    """Listen as ``setup`` says and run the reactor until it stops; returns 0.

    Prints the "serving" line to ``out`` (stdout) once listening.  Raises
    :class:`CommandLineError` if an endpoint is bad or cannot be bound.
    """
    out = out if out is not None else sys.stdout
    wanted = [(setup.public, setup.handler, setup.timeout)]
    if setup.control is not None and setup.control_handler is not None:
        wanted.append((setup.control, setup.control_handler, None))
    listening = []
    for description, handler, timeout in wanted:
        try:
            starting = server.listen(description, handler, max_line=setup.max_line,
                                     timeout=timeout, log_requests=setup.verbose,
                                     reactor=reactor)
        except ValueError as error:
            raise CommandLineError(f"bad endpoint {description!r}: {error}") from None
        listening.append(starting.addErrback(_cannot_listen, description))

    def ready(ports: list[IListeningPort]) -> None:
        line = (f"discos-backend: serving {setup.describe()} on "
                f"{describe_address(ports[0].getHost())}")
        if len(ports) > 1:
            line += f"; control on {describe_address(ports[1].getHost())}"
        print(line, file=out, flush=True)
        _begin_logging(setup.verbose)

    server.run_until_stopped(listening, ready=ready, reactor=reactor)
    return 0


def _cannot_listen(failure: Failure, description: str) -> NoReturn:
    raise CommandLineError(_listen_error(failure, description))


def run(args: argparse.Namespace) -> int:
    """Run ``discos-backend serve`` with parsed ``args``."""
    return serve(build(args))
