"""``discos-backend serve``: serve the backend simulator, or your own backend.

With no ``--backend`` it serves :class:`~discosbackend.simulator.BackendSimulator`
(with SRT's configurations, or those of ``--configurations FILE``; its
noise repeatable with ``--seed``) and opens a control endpoint (loopback
only by default) that injects faults into it.  It prints one line saying
what it serves and where, logs to stderr (or ``--log-file``, as text or
``--log-format json``), and stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NoReturn, Sequence, TextIO

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure

from discosbackend import __protocol_version__, logs, server
from discosbackend.backend import Backend
from discosbackend.cli import CommandLineError
from discosbackend.commands import COMMANDS, PROTOCOL_VERSIONS, VERSION
from discosbackend.configurations import SRT, ConfigurationError, table_named
from discosbackend.faults import CONTROL_COMMANDS, ControlHandler
from discosbackend.handlers import DBProtocolHandler, Handler
from discosbackend.protocol import DEFAULT_MAX_LINE
from discosbackend.simulator import BackendSimulator, SimulatorHandler

__all__ = ["add_parser", "run", "load_backend", "Setup", "build", "serve", "run_listening",
           "describe_address", "DEFAULT_SECTIONS", "LOOPBACK"]

#: Sections of the simulator when ``--sections`` is not given.
DEFAULT_SECTIONS = 2
#: Where the public port (by default) and the control port listen.
LOOPBACK = "127.0.0.1"
_AUTO = "auto"
_OFF = ("none", "off")
_TCP_PORT_RE = re.compile(r"tcp6?:(?:port=)?([0-9]+)(?::|$)")
_METHODS = tuple(command.method for command in COMMANDS.values() if command.method)


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
    parser.add_argument("--backend", metavar="MODULE:CLASS",
                        help="serve this backend class (created with no arguments) "
                             "instead of the simulator; the current directory is importable")
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
    parser.add_argument("--timeout", type=_positive(float), metavar="S",
                        help="answer fail when the backend takes longer than S seconds")
    parser.add_argument("--protocol", choices=PROTOCOL_VERSIONS, default=__protocol_version__,
                        metavar="VERSION",
                        help="protocol version to speak, one of "
                             f"{', '.join(PROTOCOL_VERSIONS)} (default {__protocol_version__}): "
                             "the greeting and ?version say it, and commands of later "
                             "versions are answered invalid as unknown")
    parser.add_argument("--get-rms", action=argparse.BooleanOptionalAction, default=True,
                        help="serve get-rms, which the real client sends though no "
                             "published version lists it (default: served)")
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


def load_backend(spec: str) -> type:
    """Import the backend class named ``module:Class`` (``Class`` may be dotted).

    Raises :class:`CommandLineError` when the module or the attribute is
    missing, or the object is not a class with any command method.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise CommandLineError(f"--backend {spec!r}: use module:Class")
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
    if not isinstance(target, type):
        raise CommandLineError(f"--backend {spec!r}: not a class")
    if not issubclass(target, Backend) and not any(
            callable(getattr(target, method, None)) for method in _METHODS):
        raise CommandLineError(f"--backend {spec!r}: not a backend (no command methods; "
                               "subclass discosbackend.backend.Backend)")
    return target


@dataclass
class Setup:
    """What ``serve`` will serve, and where (endpoint descriptions)."""

    backend: Any
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

    def describe(self) -> str:
        """What is served, e.g. ``BackendSimulator (2 sections)``.

        A protocol other than the default, and get-rms turned off, are said too.
        """
        describe = getattr(self.backend, "describe", None)
        text = describe() if callable(describe) else type(self.backend).__name__
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
    if args.backend is None:
        cls: type = BackendSimulator
    else:
        cls = load_backend(args.backend)
    simulated = issubclass(cls, BackendSimulator)
    for option, value in (("--sections", args.sections), ("--seed", args.seed),
                          ("--configurations", args.configurations)):
        if value is not None and not simulated:
            raise CommandLineError(f"{option} applies to the simulator only")
    try:
        backend = (cls(sections=args.sections or DEFAULT_SECTIONS, seed=args.seed,
                       configurations=table_named(args.configurations or SRT))
                   if simulated else cls())
    except ConfigurationError as error:
        raise CommandLineError(f"--configurations: {error}") from None
    except Exception as error:  # pylint: disable=broad-except
        raise CommandLineError(f"cannot create {cls.__name__}: "
                               f"{type(error).__name__}: {error}") from None
    kind = SimulatorHandler if simulated else DBProtocolHandler
    handler = kind(backend, protocol=args.protocol, client_commands=args.get_rms)
    setup = Setup(backend, handler, public, max_line=args.max_line, timeout=args.timeout,
                  verbose=args.verbose, log_file=args.log_file, log_format=args.log_format)
    if simulated:
        setup.control = _control_description(args)
        setup.control_automatic = args.control_port == _AUTO
        if setup.control is not None:
            setup.control_handler = ControlHandler(backend.faults)
    elif args.control_port not in (_AUTO, None):
        raise CommandLineError("--control-port applies to the simulator only")
    elif args.control_interface is not None:
        raise CommandLineError("--control-interface applies to the simulator only")
    return setup


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


def _listen_error(failure: Failure, description: str, control: str = "") -> str:
    """The one line saying why ``description`` cannot listen.

    ``control`` is empty for the public port; for the control port it says
    how that port was chosen (``"automatic"`` or ``"given"``), and the line
    says which option changes it.
    """
    error = failure.value
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
    starts = [(description, partial(server.listen, description, handler,
                                    max_line=setup.max_line, timeout=timeout,
                                    log_requests=setup.verbose, reactor=reactor), control)
              for description, handler, timeout, control in wanted]

    def announce(ports: list[IListeningPort]) -> str:
        line = (f"discos-backend: serving {setup.describe()} on "
                f"{describe_address(ports[0].getHost())}")
        if len(ports) > 1:
            line += f"; control on {describe_address(ports[1].getHost())}"
        return line

    run_listening(starts, announce, verbose=setup.verbose, log=log,
                  log_format=setup.log_format, reactor=reactor, out=out)
    return 0


def run_listening(starts: Sequence[tuple[str, Callable[[], Deferred[IListeningPort]], str]],
                  announce: Callable[[list[IListeningPort]], str], *, verbose: bool = False,
                  log: TextIO | None = None, log_format: str = logs.TEXT,
                  reactor: Any = None, out: TextIO | None = None) -> None:
    """Start listening on each ``(description, start, control)`` and run until stopped.

    ``control`` is empty for a public port, else how the control port was
    chosen (see :func:`_listen_error`).  Once every port listens, prints
    ``announce(ports)`` to ``out`` (stdout) and logs to ``log`` (stderr)
    from then on (debug too with ``verbose``).  Raises
    :class:`CommandLineError` if an endpoint is bad or cannot be bound.
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
        _begin_logging(log if log is not None else sys.stderr, verbose, log_format)

    server.run_until_stopped(listening, ready=ready, reactor=reactor)


def _cannot_listen(failure: Failure, description: str, control: str) -> NoReturn:
    raise CommandLineError(_listen_error(failure, description, control))


def run(args: argparse.Namespace) -> int:
    """Run ``discos-backend serve`` with parsed ``args``."""
    return serve(build(args))
