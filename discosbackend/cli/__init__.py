"""The ``discos-backend`` command line: one subcommand per module here.

Each module in this package that defines ``add_parser(subparsers)`` adds a
subcommand; the parser it adds must set ``run`` (``set_defaults(run=...)``)
to a function taking the parsed arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Any, Callable, Sequence, TypeVar

from twisted.internet import defer, task
from twisted.python.failure import Failure

from discosbackend import __protocol_version__, __version__

__all__ = ["main", "CommandLineError", "react"]

T = TypeVar("T")

#: Subcommands listed first in ``--help``, in this order; others follow.
_ORDER = ("serve", "send", "console", "check", "proxy", "replay")


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``discos-backend``; returns the exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.run(arguments) or 0)
    except CommandLineError as error:
        print(f"discos-backend {arguments.subcommand}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
