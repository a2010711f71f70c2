"""``discos-backend serve``: serve the backend simulator, or your own backend.

With no ``--backend`` it serves :class:`~discosbackend.simulator.BackendSimulator`
(with SRT's configurations, or those of ``--configurations FILE``; its
noise repeatable with ``--seed``) and opens a control endpoint (loopback
only by default) that injects faults into it.  ``--backend module:NAME``
serves a backend class, a factory (any callable returning a backend) or a
handler instead, made with the ``-o KEY=VALUE`` options as keyword
arguments.  It prints one line saying what it serves and where, logs to
stderr (or ``--log-file``, as text or ``--log-format json``), and stops
cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import ipaddress
import importlib
import inspect
import math
import os
import re
import sys
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, NoReturn, Sequence, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from discosbackend import __protocol_version__, logs, server
from discosbackend.cli import CommandLineError
from discosbackend.commands import COMMANDS, PROTOCOL_VERSIONS, VERSION
from discosbackend.configurations import SRT, ConfigurationError, table_named
from discosbackend.errors import OpenError
from discosbackend.faults import CONTROL_COMMANDS, ControlHandler
from discosbackend.handlers import DBProtocolHandler, Handler
from discosbackend.protocol import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_LINE, parse_networks
from discosbackend.server import describe_address
from discosbackend.simulator import BackendSimulator, SimulatorHandler

__all__ = ["add_parser", "run", "load_backend", "backend_option", "Setup", "build", "serve",
           "run_listening", "describe_address", "DEFAULT_SECTIONS", "DEFAULT_TIMEOUT",
           "LOOPBACK"]

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
_log = Logger()


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


def _seconds(text: str) -> float:
    """A number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds >= 0")
    return value


def _limit(text: str) -> float | None:
    """A time limit in seconds, ``0`` meaning none (``None``)."""
    return _seconds(text) or None


def _count(text: str) -> int | None:
    """A count of at least 1, or 0 meaning no limit (``None``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 (no limit) or more")
    return value or None


def _networks(option: str, texts: list[str] | None) -> list[str] | None:
    """``texts`` if each is an IP network; :class:`CommandLineError` naming ``option`` if not."""
    if texts is None:
        return None
    for text in texts:
        try:
            parse_networks([text])
        except ValueError:
            raise CommandLineError(f"{option} {text!r}: not an IP network (e.g. "
                                   "192.168.10.0/24, 10.0.0.5 or ::1)") from None
    return texts


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


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
    parser.add_argument("--port", type=_port,
                        help="TCP port to listen on, 0 for any free one "
                             f"(default {server.DEFAULT_PORT})")
    parser.add_argument("--interface",
                        help=f"address to listen on (default {LOOPBACK}; 0.0.0.0 for all)")
    parser.add_argument("--endpoint", metavar="STRING",
                        help="Twisted endpoint string to listen on instead of --port and "
                             "--interface (not with them), e.g. tcp:8978:interface=0.0.0.0 "
                             "or unix:/tmp/backend.sock")
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
    parser.add_argument("--configurations", metavar="FILE",
                        help="the simulator's table of configurations, a TOML file "
                             f"(default '{SRT}': SRT's Sardara and SKARAB configurations)")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="seed of the simulator's gains and noise: the same requests get "
                             "the same values")
    parser.add_argument("--control-port", type=_control_port, default=_AUTO, metavar="N",
                        help="fault-injection control port of the simulator: default the "
                             "public port + 1 (any free port when that is 0); 0 for any free "
                             "port; 'none' to disable")
    parser.add_argument("--control-interface", metavar="ADDRESS",
                        help=f"address the control port listens on (default {LOOPBACK})")
    parser.add_argument("--max-line", type=_positive(int), default=DEFAULT_MAX_LINE,
                        metavar="BYTES",
                        help=f"longest request line accepted (default {DEFAULT_MAX_LINE})")
    parser.add_argument("--timeout", type=_limit, default=DEFAULT_TIMEOUT, metavar="S",
                        help="answer fail,timeout when the backend takes longer than S "
                             f"seconds (default {DEFAULT_TIMEOUT:g}; 0: no limit)")
    parser.add_argument("--protocol", choices=PROTOCOL_VERSIONS, default=__protocol_version__,
                        metavar="VERSION",
                        help="protocol version to speak, one of "
                             f"{', '.join(PROTOCOL_VERSIONS)} (default {__protocol_version__}): "
                             "the greeting and ?version say it, and commands of later "
                             "versions are answered invalid as unknown")
    parser.add_argument("--get-rms", action=argparse.BooleanOptionalAction, default=True,
                        help="serve get-rms, which the real client sends though no "
                             "published version lists it (default: served)")
    parser.add_argument("--backlog", type=_positive(int), default=server.DEFAULT_BACKLOG,
                        metavar="N",
                        help="connections the kernel queues before they are accepted "
                             f"(default {server.DEFAULT_BACKLOG})")
    parser.add_argument("--max-connections", type=_count, default=DEFAULT_MAX_CONNECTIONS,
                        metavar="N",
                        help="connections served at once; the next is told 'too many "
                             f"connections' and closed (default {DEFAULT_MAX_CONNECTIONS}; "
                             "0: no cap)")
    parser.add_argument("--idle-timeout", type=_limit, default=None, metavar="S",
                        help="close a connection that sends nothing for S seconds "
                             "(default: never; DISCOS keeps one connection for days)")
    parser.add_argument("--allow", action="append", metavar="CIDR",
                        help="serve only clients from this network, e.g. 192.168.10.0/24 or "
                             "::1 (repeatable; default: anyone who can reach the port)")
    parser.add_argument("--control-allow", action="append", metavar="CIDR",
                        help="clients allowed on the control port (repeatable); needed to "
                             "put it on an address other than loopback")
    parser.add_argument("--grace", type=_seconds, default=server.DEFAULT_GRACE,
                        metavar="S",
                        help="at shutdown, seconds connections get to read their last "
                             f"replies before they are dropped (default {server.DEFAULT_GRACE:g})")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every request with its reply and duration, and debug "
                             "messages")
    parser.add_argument("--log-file", metavar="PATH",
                        help="append the log to PATH instead of writing it to stderr")
    parser.add_argument("--log-format", choices=logs.FORMATS, default=logs.TEXT,
                        help="text lines (default) or JSON lines with time, level, peer, "
                             "request, reply and duration_ms")
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
        missing = [parameter.name for parameter in signature.parameters.values()
                   if parameter.default is parameter.empty and parameter.name not in options
                   and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD,
                                          parameter.KEYWORD_ONLY)]
        if missing:
            raise CommandLineError(f"{name} needs " + " ".join(f"-o {key}=VALUE"
                                                               for key in missing))
    try:
        return target(**options)
    except ConfigurationError as error:  # a table the simulator cannot honour
        raise CommandLineError(f"--configurations: {error}") from None
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
    #: Whether the control port is the default one (the public port + 1).
    control_automatic: bool = False
    log_file: str | None = None
    log_format: str = logs.TEXT
    #: Admission on the public port: server.listen's backlog, max_connections,
    #: idle_timeout and allow.
    admission: dict[str, Any] = field(default_factory=dict)
    #: Who may use the control port (``None``: anyone who reaches it, i.e. loopback).
    control_allow: list[str] | None = None
    grace: float | None = server.DEFAULT_GRACE

    def describe(self) -> str:
        """What is served, e.g. ``BackendSimulator (2 sections)``, ``MyBackend (threaded)``.

        A protocol other than the default, and get-rms turned off, are said too.
        """
        served: Any = self.handler if self.backend is None else self.backend
        text = (served.describe() if callable(getattr(served, "describe", None))
                else type(served).__name__)
        if getattr(self.handler, "threaded", False):
            text += " (threaded)"
        protocol = getattr(self.handler, "protocol", __protocol_version__)
        if protocol != __protocol_version__:
            text += f" speaking protocol {protocol}"
        commands = getattr(self.handler, "commands", COMMANDS)
        if "get-rms" not in commands:
            text += " without get-rms"
        return text


def _requested_port(args: argparse.Namespace) -> int | None:
    if args.endpoint is None:
        return server.DEFAULT_PORT if args.port is None else int(args.port)
    match = _TCP_PORT_RE.match(args.endpoint)
    return int(match.group(1)) if match else None


def _control_description(args: argparse.Namespace) -> str | None:
    port = args.control_port
    if port == _AUTO:
        public = _requested_port(args)
        if public == 65535:
            raise CommandLineError("no default control port after 65535: give --control-port")
        port = None if public is None else public + 1 if public else 0
    if port is not None:
        return server.endpoint_description(port, args.control_interface or LOOPBACK)
    if args.control_interface is not None:
        raise CommandLineError(
            "--control-interface and --control-port none contradict each other: drop one"
            if args.control_port is None else
            "--control-interface needs --control-port N: this endpoint has no default "
            "control port")
    return None


def _check_control_exposure(args: argparse.Namespace, setup: Setup) -> None:
    """Refuse a control port off loopback that does not say who may use it."""
    if (setup.control is not None and not _is_loopback(args.control_interface or LOOPBACK)
            and setup.control_allow is None):
        # Anyone reaching it could make the backend fail at will.
        raise CommandLineError(
            f"--control-interface {args.control_interface}: the fault-injection port has "
            "no authentication; say who may use it with --control-allow CIDR")


def _public_description(args: argparse.Namespace) -> str:
    if args.endpoint is None:
        port = server.DEFAULT_PORT if args.port is None else args.port
        return server.endpoint_description(port, args.interface or LOOPBACK)
    given = [option for option, value in (("--port", args.port), ("--interface", args.interface))
             if value is not None]
    if given:
        raise CommandLineError(f"--endpoint and {' and '.join(given)} conflict: the endpoint "
                               "string says where to listen; give one or the other")
    return str(args.endpoint)


def build(args: argparse.Namespace) -> Setup:
    """Check the arguments and create the backend and handlers.

    Raises :class:`CommandLineError` on anything wrong, conflicting options
    included.
    """
    public = _public_description(args)
    target = BackendSimulator if args.backend is None else load_backend(args.backend)
    options = dict(args.backend_options)
    if len(options) < len(args.backend_options):
        raise CommandLineError("-o: each KEY once")
    if isinstance(target, type) and issubclass(target, BackendSimulator):
        if args.sections is not None and "sections" in options:
            raise CommandLineError("give --sections or -o sections, not both")
        options.setdefault("sections", args.sections or DEFAULT_SECTIONS)
        options.setdefault("seed", args.seed)
        try:
            options.setdefault("configurations", table_named(args.configurations or SRT))
        except ConfigurationError as error:
            raise CommandLineError(f"--configurations: {error}") from None
    else:
        for option, value in (("--sections", args.sections), ("--seed", args.seed),
                              ("--configurations", args.configurations)):
            if value is not None:
                raise CommandLineError(f"{option} applies to the simulator only")
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
        handler, backend = kind(made, protocol=args.protocol, client_commands=args.get_rms,
                                threaded=args.threaded), made
    setup = Setup(backend, handler, public, max_line=args.max_line, timeout=args.timeout,
                  verbose=args.verbose, log_file=args.log_file, log_format=args.log_format,
                  admission={"backlog": args.backlog, "max_connections": args.max_connections,
                             "idle_timeout": args.idle_timeout,
                             "allow": _networks("--allow", args.allow)},
                  control_allow=_networks("--control-allow", args.control_allow),
                  grace=args.grace)
    if isinstance(handler, SimulatorHandler):
        setup.control = _control_description(args)
        setup.control_automatic = args.control_port == _AUTO
        _check_control_exposure(args, setup)
        if setup.control is not None:
            setup.control_handler = ControlHandler(handler.faults)
    elif args.control_port not in (_AUTO, None):
        raise CommandLineError("--control-port applies to the simulator only")
    elif args.control_interface is not None:
        raise CommandLineError("--control-interface applies to the simulator only")
    return setup


def _open_log(setup: Setup) -> TextIO:
    """Where the log goes: stderr, or the log file opened for appending."""
    if setup.log_file is None:
        return sys.stderr
    try:
        # Line-buffered: each event reaches the file as it is logged.
        return open(setup.log_file, "a", encoding="utf-8", buffering=1)
    except OSError as error:
        raise CommandLineError(f"--log-file {setup.log_file!r}: cannot open it: "
                               f"{error.strerror or error}") from None


def _begin_logging(stream: TextIO, verbose: bool, log_format: str) -> None:
    logs.begin_logging(stream, verbose=verbose, log_format=log_format)


def begin_logging_to_stderr(verbose: bool) -> None:
    """Log text lines to stderr, debug too with ``verbose`` (what other subcommands use)."""
    _begin_logging(sys.stderr, verbose, logs.TEXT)


def _listen_error(failure: Failure, description: str, control: str = "") -> str:
    """The one line saying why ``description`` cannot listen.

    ``control`` is empty for the public port; for the control port it says
    how that port was chosen (``"automatic"`` or ``"given"``), and the line
    says which option changes it.
    """
    error = failure.value
    if isinstance(error, OpenError):
        return str(error)  # it says plainly which backend failed, and how
    if isinstance(error, CannotListenError):
        reason = error.socketError
        text = getattr(reason, "strerror", None) or str(reason)
    else:
        text = failure.getErrorMessage()
    if not control:
        return f"cannot listen on {description}: {text}"
    how = " (the public port + 1)" if control == _AUTO else ""
    return (f"cannot listen on the control port {description}{how}: {text}; choose another "
            "with --control-port N, or none to turn it off")


def serve(setup: Setup, reactor: Any = None, out: TextIO | None = None) -> int:
    """Listen as ``setup`` says and run the reactor until it stops; returns 0.

    Prints the "serving" line to ``out`` (stdout) once listening.  Raises
    :class:`CommandLineError` if an endpoint is bad or cannot be bound.
    """
    log = _open_log(setup)
    wanted = [(setup.public, setup.handler, setup.timeout, "")]
    if setup.control is not None and setup.control_handler is not None:
        wanted.append((setup.control, setup.control_handler, None,
                       _AUTO if setup.control_automatic else "given"))
    admission = [setup.admission, {"backlog": setup.admission.get("backlog",
                                                                 server.DEFAULT_BACKLOG),
                                   "allow": setup.control_allow}]
    starts = [(description, partial(server.listen, description, handler,
                                    max_line=setup.max_line, timeout=timeout,
                                    log_requests=setup.verbose, reactor=reactor, **options),
               control)
              for (description, handler, timeout, control), options in zip(wanted, admission)]

    def announce(ports: list[IListeningPort]) -> str:
        line = (f"discos-backend: serving {setup.describe()} on "
                f"{describe_address(ports[0].getHost())}")
        if len(ports) > 1:
            line += f"; control on {describe_address(ports[1].getHost())}"
        return line

    run_listening(starts, announce,
                  begin_logging=partial(_begin_logging, log, setup.verbose, setup.log_format),
                  grace=setup.grace, reactor=reactor, out=out,
                  open_to_all=setup.admission.get("allow") is None)
    return 0


def run_listening(starts: Sequence[tuple[str, Callable[[], Deferred[IListeningPort]], str]],
                  announce: Callable[[list[IListeningPort]], str], *,
                  begin_logging: Callable[[], None] | None = None,
                  grace: float | None = server.DEFAULT_GRACE, reactor: Any = None,
                  out: TextIO | None = None, open_to_all: bool = False) -> None:
    """Start listening on each ``(description, start, control)`` and run until stopped.

    ``control`` is empty for a public port, else how the control port was
    chosen (see :func:`_listen_error`).  Once every port listens, prints
    ``announce(ports)`` to ``out`` (stdout), calls ``begin_logging`` (by
    default: info and up to stderr), and logs each address it listens on,
    with a note when the first port is reachable from other hosts and
    ``open_to_all`` (no allow list).  Connections get ``grace`` seconds at
    shutdown.  Raises :class:`CommandLineError` if an endpoint is bad or
    cannot be bound.
    """
    out = out if out is not None else sys.stdout
    listening = []
    for description, start, control in starts:
        try:
            starting = start()
        except ValueError as error:
            raise CommandLineError(f"bad endpoint {description!r}: {error}") from None
        listening.append(starting.addErrback(_cannot_listen, description, control))

    def ready(ports: list[IListeningPort]) -> None:
        print(announce(ports), file=out, flush=True)
        (begin_logging or partial(begin_logging_to_stderr, False))()
        for port in ports:
            _log.info("listening on {address}", address=describe_address(port.getHost()))
        host = getattr(ports[0].getHost(), "host", None)
        if open_to_all and host is not None and not _is_loopback(host):
            _log.warn("note: {address} is open to every host that can reach it, and the "
                      "protocol has no authentication; restrict it with --allow CIDR",
                      address=describe_address(ports[0].getHost()))

    server.run_until_stopped(listening, ready=ready, grace=grace, reactor=reactor)


def _cannot_listen(failure: Failure, description: str, control: str) -> NoReturn:
    raise CommandLineError(_listen_error(failure, description, control))


def run(args: argparse.Namespace) -> int:
    """Run ``discos-backend serve`` with parsed ``args``."""
    return serve(build(args))
