"""``discos-backend send HOST:PORT REQUEST...``: send requests, print the replies.

Each request is a protocol line, with or without its leading ``?``
(``'?get-tpi,0,0'``, ``status``, ``set-filename,/tmp/a\\,b.fits``).  The
requests are checked, then sent one after the other on one connection;
each reply line is printed exactly as received.  Exit status: 0 when every
reply was ``ok``, 1 when any was ``fail`` or ``invalid``, 2 when the
connection could not be opened or broke (one line on stderr).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, TextIO

from discosbackend.cli import CommandLineError
from discosbackend.client.address import parse_address
from discosbackend.client.blocking import DEFAULT_TIMEOUT, BlockingClient
from discosbackend.client.errors import ClientError
from discosbackend.grammar import (ENCODING, ENCODING_ERRORS, OK, REPLY, REQUEST,
                                   GrammarException, Message, parse_message)

__all__ = ["add_parser", "run", "parse_request_line", "positive_seconds", "write_line",
           "add_connection_arguments"]


def parse_request_line(text: str) -> Message:
    """The request a typed line stands for; the leading ``?`` may be left out.

    Raises ``ValueError`` (a ``GrammarException`` for grammar errors) with
    a one-line reason.
    """
    line = text.strip()
    if line.startswith(REPLY):
        raise ValueError(f"{line[:40]!r} is a reply: a request starts with '{REQUEST}' "
                         "or with the command name")
    if not line.startswith(REQUEST):
        line = REQUEST + line
    try:
        return parse_message(line)
    except GrammarException as error:
        raise GrammarException(f"bad request {text.strip()[:60]!r}: {error.reason}",
                               error.name) from None


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value > 0:
        return value
    raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")


def write_line(line: str, stream: TextIO | None = None) -> None:
    """Write ``line`` and a newline, byte for byte as it came off the wire."""
    stream = stream if stream is not None else sys.stdout
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(line.encode(ENCODING, ENCODING_ERRORS).decode(ENCODING, "replace") + "\n")
    else:
        stream.flush()
        buffer.write(line.encode(ENCODING, ENCODING_ERRORS) + b"\n")
    stream.flush()


def add_parser(subparsers: Any) -> None:
    """Add the ``send`` subcommand."""
    parser = subparsers.add_parser(
        "send", help="send requests to a backend and print the replies",
        description="Send each REQUEST in order on one connection and print each "
                    "reply line as received.",
        epilog="Exit status: 0 if every reply was ok, 1 if any was fail or invalid, "
               "2 if the connection could not be opened or broke.  Quote requests "
               "that start with '?' from the shell.")
    add_connection_arguments(parser)
    parser.add_argument("requests", metavar="REQUEST", nargs="+",
                        help="a request line, e.g. '?get-tpi,0,0' or status "
                             "(the leading ? is optional)")
    parser.set_defaults(run=run)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The backend's address and ``--timeout``, as ``send`` and ``console`` take them."""
    parser.add_argument("address", metavar="HOST:PORT",
                        help="the backend: HOST:PORT, [IPv6]:PORT, tcp:host=H:port=P "
                             "or unix:path=P")
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT,
                        metavar="S",
                        help=f"seconds to wait for the connection and for each reply "
                             f"(default {DEFAULT_TIMEOUT:g})")


def run(arguments: argparse.Namespace) -> int:
    """Send the requests; return the exit status."""
    try:
        address = parse_address(arguments.address)
        messages = [parse_request_line(text) for text in arguments.requests]
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    status = 0
    try:
        with BlockingClient.connect(address, timeout=arguments.timeout) as client:
            for message in messages:
                reply, line = client.exchange(message)
                write_line(line)
                if reply.code != OK:
                    status = 1
    except (ClientError, ValueError) as error:
        raise CommandLineError(str(error)) from None
    return status
