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
from typing import Sequence

from discosbackend import __protocol_version__, __version__

__all__ = ["main", "CommandLineError"]

#: Subcommands listed first in ``--help``, in this order; others follow.
_ORDER = ("serve", "send", "console", "check")


class CommandLineError(Exception):
    """Bad arguments or environment: printed as one line, exit status 2."""


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
