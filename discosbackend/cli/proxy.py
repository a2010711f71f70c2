"""``discos-backend proxy --listen ENDPOINT --to HOST:PORT``: watch DISCOS talk to a backend.

Point DISCOS at the proxy instead of the backend: every byte goes through
unchanged, each problem either side causes is logged to stderr as it
happens (see :mod:`discosbackend.proxy`), and ``--record FILE`` writes the
session as a transcript that ``discos-backend replay`` can play again.
Stops cleanly on Ctrl-C or SIGTERM and then prints what it saw.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from twisted.internet.interfaces import IListeningPort

from discosbackend import proxy
from discosbackend.cli import CommandLineError
from discosbackend.cli import serve as serve_module
from discosbackend.cli.serve import LOOPBACK, describe_address, run_listening
from discosbackend.client.address import parse_address
from discosbackend.proxy import Problem
from discosbackend.server import endpoint_description
from discosbackend.transcript import TranscriptWriter

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``proxy`` subcommand."""
    parser = subparsers.add_parser(
        "proxy", help="relay DISCOS to a backend, checking and recording every line",
        description="Relay every connection made to ENDPOINT to the backend at HOST:PORT, "
                    "byte for byte, logging to stderr each line that breaks the protocol "
                    "(with its connection and the lines involved).  Stops on Ctrl-C or "
                    "SIGTERM.")
    parser.add_argument("--listen", required=True, metavar="ENDPOINT",
                        help="where DISCOS connects: a port number (on --interface) or a "
                             "Twisted endpoint string, e.g. tcp:8978:interface=0.0.0.0")
    parser.add_argument("--interface", default=LOOPBACK, metavar="ADDRESS",
                        help=f"address a port number listens on (default {LOOPBACK}; "
                             "0.0.0.0 for all)")
    parser.add_argument("--to", required=True, metavar="HOST:PORT",
                        help="the backend: HOST:PORT, [IPv6]:PORT or an endpoint string")
    parser.add_argument("--record", metavar="FILE",
                        help="write every line to FILE as a transcript (JSON lines)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug messages too")
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    """Run the proxy until stopped; returns 0."""
    try:
        backend = parse_address(arguments.to)
        where = endpoint_description(arguments.listen,
                                     arguments.interface if arguments.listen.isdigit() else None)
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    recorder = None
    if arguments.record:
        try:
            recorder = TranscriptWriter.open(arguments.record)
        except OSError as error:
            raise CommandLineError(f"cannot write {arguments.record}: "
                                   f"{error.strerror or error}") from None
    seen: list[Problem] = []
    factories: list[proxy.ProxyFactory] = []

    def announce(ports: list[IListeningPort]) -> str:
        factories.append(ports[0].factory)  # type: ignore[attr-defined]
        line = (f"discos-backend: proxying {describe_address(ports[0].getHost())} "
                f"to {backend}")
        return line + (f", recording to {arguments.record}" if recorder else "")

    try:
        run_listening([(where, partial(proxy.listen, where, backend, recorder=recorder,
                                       on_problem=seen.append), "")],
                      announce, begin_logging=partial(serve_module.begin_logging_to_stderr,
                                                      arguments.verbose))
    finally:
        if recorder is not None:
            recorder.close()
    connections = factories[0].count if factories else 0
    print(f"discos-backend: {connections} connection{'' if connections == 1 else 's'}, "
          f"{len(seen)} problem{'' if len(seen) == 1 else 's'}", flush=True)
    return 0
