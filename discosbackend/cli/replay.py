"""``discos-backend replay FILE HOST:PORT``: play a recorded session again and compare.

Sends the requests of a transcript (``discos-backend proxy --record``) to a
server, one connection per recorded connection, in recorded order, and
compares each reply with the recorded one by the command table's shapes
(see :mod:`discosbackend.testing.replay`).  Prints one line per connection,
each difference under it, and a summary as the last line.  Exit status: 0
when every reply matched, 1 when any differed, 2 when the file cannot be
read, the server cannot be reached or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Any

from twisted.internet import defer

from discosbackend.cli import CommandLineError, react
from discosbackend.cli.check import symbols
from discosbackend.cli.junit import Case, junit_document, write_junit
from discosbackend.cli.send import positive_seconds
from discosbackend.client.address import Address, parse_address
from discosbackend.testing.replay import ConnectionResult, Report, replay
from discosbackend.testing.runner import FAILED, PASSED
from discosbackend.testing.session import CannotConnect, Settings
from discosbackend.transcript import Record, TranscriptError, read_transcript

__all__ = ["add_parser", "run", "junit_cases"]


def add_parser(subparsers: Any) -> None:
    """Add the ``replay`` subcommand."""
    defaults = Settings()
    parser = subparsers.add_parser(
        "replay", help="replay a recorded session against a backend and compare the replies",
        description="Send the requests of a transcript (written by 'discos-backend proxy "
                    "--record') to the server at HOST:PORT, one connection per recorded "
                    "connection and in recorded order, and compare each reply with the "
                    "recorded one: the code must match, and the values by their kind "
                    "(timestamps and measured floats need only be valid; configuration ids, "
                    "counts and words must be equal).",
        epilog="Exit status: 0 if every reply matched, 1 if any differed, 2 if the file "
               "cannot be read, the server cannot be reached or the arguments are wrong.")
    parser.add_argument("transcript", metavar="FILE", help="the transcript to replay")
    parser.add_argument("address", metavar="HOST:PORT",
                        help="the backend: HOST:PORT, [IPv6]:PORT or an endpoint string")
    parser.add_argument("--timing", action="store_true",
                        help="keep the recorded gaps before each request (default: send each "
                             "as soon as the replies recorded before it have come)")
    parser.add_argument("--exact", action="store_true",
                        help="every reply must be the recorded one byte for byte, "
                             "timestamps and measurements included")
    parser.add_argument("--timeout", type=positive_seconds, default=defaults.timeout,
                        metavar="S", help="seconds to wait for each reply and greeting "
                                          f"(default {defaults.timeout:g})")
    parser.add_argument("--junit-xml", metavar="FILE",
                        help="also write the results to FILE as JUnit XML, one test case "
                             "per connection")
    parser.set_defaults(run=run)


def junit_cases(report: Report) -> list[Case]:
    """One JUnit test case per replayed connection."""
    return [Case(f"connection {result.connection}", PASSED if result.matches else FAILED,
                 message=result.differences[0].why if result.differences else "",
                 text=result.describe(), kind="ReplyDiffers", seconds=result.seconds)
            for result in report.connections]


def run(arguments: argparse.Namespace) -> int:
    """Replay the transcript; return the exit status."""
    try:
        address = parse_address(arguments.address)
        records = read_transcript(arguments.transcript)
    except (ValueError, TranscriptError) as error:
        raise CommandLineError(str(error)) from None
    settings = Settings(timeout=arguments.timeout, greeting_timeout=arguments.timeout)
    report = react(partial(_replay, records, address, settings, arguments), (CannotConnect,))
    if arguments.junit_xml:
        write_junit(junit_document(f"discos-backend replay {arguments.transcript}",
                                   "discos-backend.replay", junit_cases(report)),
                    arguments.junit_xml)
    print(report.summary(), flush=True)
    return 0 if report.matches else 1


def _replay(records: list[Record], address: Address, settings: Settings,
            arguments: argparse.Namespace, reactor: Any) -> defer.Deferred[Report]:
    marks = symbols(sys.stdout)[:2]
    connections = len({record.connection for record in records})
    header = [f"replaying {arguments.transcript} against {address}: {connections} "
              f"connection{'' if connections == 1 else 's'}"]

    def report(result: ConnectionResult) -> None:
        if header:  # only once the server answered: nothing on stdout if it cannot be reached
            print(header.pop(), flush=True)
        print(result.describe(marks), flush=True)

    return replay(records, address, timing=arguments.timing, exact=arguments.exact,
                  settings=settings, reactor=reactor, progress=report)
