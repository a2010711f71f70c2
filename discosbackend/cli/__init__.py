"""The ``discos-backend`` command line: one subcommand per module here.

Each module in this package that defines ``add_parser(subparsers)`` adds a
subcommand; the parser it adds must set ``run`` (``set_defaults(run=...)``)
to a function taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys
from typing import Any, Callable, Sequence, TypeVar

from twisted.internet import defer, task
from twisted.python.failure import Failure

from discosbackend import __protocol_version__, __version__

__all__ = ["main", "CommandLineError", "react"]

T = TypeVar("T")

#: Subcommands listed first in ``--help``, in this order; others follow.
_ORDER = ("serve", "send", "console", "check", "proxy", "replay")
_SIGPIPE = int(getattr(signal, "SIGPIPE", 13))


class CommandLineError(Exception):
    """Bad arguments or environment: printed as one line, exit status 2."""


def react(work: Callable[[Any], defer.Deferred[T]],
          expected: tuple[type[Exception], ...] = ()) -> T:
    """Run the reactor until ``work(reactor)`` fires; return its result.

    An ``expected`` error becomes a :class:`CommandLineError` with its
    message, any other one a :class:`CommandLineError` saying ``internal
    error``; ``KeyboardInterrupt`` if the reactor stopped first (Ctrl-C, a
    signal).
    """
    outcome: list[T | Failure] = []

    def main(reactor: Any) -> defer.Deferred[None]:
        return work(reactor).addBoth(outcome.append)
    try:
        task.react(main)
    except SystemExit:
        pass
    if not outcome:
        raise KeyboardInterrupt()
    result = outcome[0]
    if isinstance(result, Failure):
        if result.check(BrokenPipeError):  # our reader went away: main() leaves quietly
            result.raiseException()
        if result.check(*expected):
            raise CommandLineError(result.getErrorMessage())
        assert result.type is not None  # a Failure always holds an exception
        raise CommandLineError(f"internal error: {result.type.__name__}: "
                               f"{result.getErrorMessage()}")
    return result


def _subcommand_modules() -> list[str]:
    found = [info.name for info in pkgutil.iter_modules(__path__)
             if not info.name.startswith("_")]
    return sorted(found, key=lambda name: (_ORDER.index(name) if name in _ORDER
                                           else len(_ORDER), name))


def build_parser() -> argparse.ArgumentParser:
    """The whole command line's parser."""
    parser = argparse.ArgumentParser(
        prog="discos-backend",
        description="Serve, simulate, probe and test DISCOS backends "
                    f"(protocol {__protocol_version__}).")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__} (protocol {__protocol_version__})")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for name in _subcommand_modules():
        module = importlib.import_module(f"{__name__}.{name}")
        add_parser = getattr(module, "add_parser", None)
        if add_parser is not None:
            add_parser(subparsers)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an argument no subcommand knows is that subcommand's error.

    (argparse leaves such arguments to the top-level parser, whose usage
    line would not say what the subcommand takes.)
    """
    arguments, unknown = parser.parse_known_args(argv)
    if unknown:
        # pylint: disable=protected-access
        subparsers = next(action for action in parser._actions
                          if isinstance(action, argparse._SubParsersAction))
        subparsers.choices[arguments.subcommand].error(
            f"unrecognized arguments: {' '.join(unknown)}")
    return arguments


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``| head``): leave quietly, as Unix tools do.

    Standard output is pointed at /dev/null so that flushing it at exit
    cannot fail again; the status is the shell's for death by SIGPIPE.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout is not a real file
        pass
    return 128 + _SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``discos-backend``; returns the exit status."""
    arguments = _parse(build_parser(), argv)
    try:
        return int(arguments.run(arguments) or 0)
    except CommandLineError as error:
        print(f"discos-backend {arguments.subcommand}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
