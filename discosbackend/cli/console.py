"""``discos-backend console HOST:PORT``: talk to a backend interactively.

Type requests with or without their leading ``?`` (``get-tpi,0,0``); each
reply is printed as received, coloured by its code on a terminal.  ``help``
lists the commands from the same declarations the server uses, plus the
extension commands the server lists in its reply to ``?help``; ``help
NAME`` shows one; ``quit``, ``exit`` or end of input leaves.  On a terminal
the line editor has history (kept in ``~/.discos_backend_history``) and
completes command names with TAB.

The console stays up: a reply that times out, a server that goes away and
Ctrl-C while waiting are reported, the connection is closed, and the next
request typed reconnects (saying so).
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from typing import Any, Callable, TextIO

from discosbackend.cli import CommandLineError
from discosbackend.cli.send import add_connection_arguments, parse_request_line, write_line
from discosbackend.client.address import parse_address
from discosbackend.client.blocking import BlockingClient
from discosbackend.client.errors import ClientError
from discosbackend.commands import COMMANDS, HELP, Command
from discosbackend.grammar import FAIL, INVALID, OK, REQUEST, request

__all__ = ["add_parser", "run", "Console", "HISTORY_FILE"]

#: Where the line editor keeps its history.
HISTORY_FILE = "~/.discos_backend_history"
HISTORY_LENGTH = 1000
PROMPT = "discos> "
#: The console's own words (besides the protocol's commands).
HELP_WORDS = ("help", "?help")
QUIT_WORDS = ("quit", "exit")

_COLOURS = {OK: "\x1b[32m", FAIL: "\x1b[31m", INVALID: "\x1b[33m", "error": "\x1b[31m",
            "note": "\x1b[2m"}
_RESET = "\x1b[0m"
_USAGE_WIDTH = 34


def _describe(command: Command) -> list[str]:
    lines = [command.usage(), f"  {command.summary or 'no description'}"]
    for argument in command.arguments:
        notes = [argument.kind.expectation + (" or * (unchanged)" if argument.wildcard else "")]
        if argument.optional:
            notes.append("optional" + (f", default {argument.default}"
                                       if argument.default is not None else ""))
        if argument.zero_is_default:
            notes.append("0 means the default")
        lines.append(f"  {argument.name}: {'; '.join(notes)}")
    if command.reply:
        values = ", ".join(value.name + ("..." if value.repeated else "")
                           + f" ({value.kind.name})" for value in command.reply)
        lines.append(f"  ok reply: {values}")
    else:
        lines.append("  ok reply: no values")
    lines.append(f"  since: {command.since}")
    return lines


class Console:
    """The console's logic, without the terminal: one typed line at a time.

    ``connect`` opens a :class:`BlockingClient` (and raises
    :class:`~discosbackend.client.errors.ClientError` when it cannot); the
    console calls it again whenever a request is typed while the connection
    is closed, after a reply timed out or the server went away.  Output goes
    to ``output``, with ANSI colours when ``colour`` is true.
    """

    def __init__(self, connect: Callable[[], BlockingClient], output: TextIO, *,
                 colour: bool = False) -> None:
        self._connect = connect
        self.output = output
        self.colour = colour
        #: The open connection; ``None`` before :meth:`open` and after a loss.
        self.client: BlockingClient | None = None
        #: The standard commands, described from the declarations the server uses.
        self.commands: dict[str, Command] = dict(COMMANDS)
        #: The server's other commands (``?help``): name -> (usage, summary).
        self.extensions: dict[str, tuple[str, str]] = {}

    def say(self, text: str, kind: str | None = None) -> None:
        """Print ``text``, coloured for ``kind`` (a return code, ``error``, ``note``)."""
        if self.colour and kind in _COLOURS:
            text = _COLOURS[kind] + text + _RESET
        write_line(text, self.output)

    def open(self, again: bool = False) -> None:
        """Connect; show where, the greeting, and learn the server's extension commands.

        Raises :class:`~discosbackend.client.errors.ClientError` when the
        connection cannot be opened.
        """
        client = self._connect()
        self.client = client
        self.say(f"{'reconnected' if again else 'connected'} to {client.address}", "note")
        self.say(client.greeting_line, OK)
        self._learn_extensions(client)

    def _learn_extensions(self, client: BlockingClient) -> None:
        """Ask ``?help`` which commands the server answers beyond the standard ones.

        A server that does not answer it (it is not part of the protocol)
        has the standard commands only.
        """
        listing, _ = client.exchange(request(HELP))
        if listing.code != OK:
            return
        self.extensions = {}
        for name in listing.arguments:
            if name in self.commands or name == HELP:
                continue
            described, _ = client.exchange(request(HELP, name))
            if described.code == OK and len(described.arguments) >= 2:
                self.extensions[name] = (described.arguments[0], described.arguments[1])
            else:
                self.extensions[name] = (name, "")

    def close(self) -> None:
        """Close the connection, if open."""
        if self.client is not None:
            self.client.close()
            self.client = None

    def greet(self) -> None:
        """Say how to get help (once, after the first connection)."""
        self.say("type help for the commands, quit to leave", "note")

    def handle(self, line: str) -> bool:
        """Act on one typed line; return ``False`` when the console should end.

        A request typed while the connection is closed reconnects first.
        Raises :class:`~discosbackend.client.errors.ClientError` when the
        connection cannot be opened or is lost (the console then has none).
        """
        words = line.split()
        if not words or line.lstrip().startswith("#"):
            return True
        first = words[0].lower()
        if first in QUIT_WORDS and len(words) == 1:
            return False
        if first in HELP_WORDS and len(words) <= 2 and "," not in line:
            self.help(words[1] if len(words) == 2 else None)
            return True
        try:
            message = parse_request_line(line)
        except ValueError as error:
            self.say(f"error: {error}", "error")
            return True
        if self.client is None or self.client.closed:
            self.open(again=True)
        assert self.client is not None  # open() set it or raised
        reply, received = self.client.exchange(message)
        self.say(received, reply.code)
        return True

    def help(self, topic: str | None = None) -> None:
        """List the commands, or describe the command ``topic``."""
        if topic is not None:
            name = topic.lstrip(REQUEST)
            command = self.commands.get(name)
            if command is not None:
                for text in _describe(command):
                    self.say(text)
            elif name in self.extensions:
                usage, summary = self.extensions[name]
                self.say(usage)
                self.say(f"  {summary or 'no description'}")
                self.say("  an extension command of this server, as its ?help describes it")
            else:
                self.say(f"error: unknown command {topic!r}: type help for the list", "error")
            return
        self.say("Requests: NAME[,ARGUMENT...], with or without the leading '?'. Commands:")
        entries = [(command.usage(), command.summary) for command in self.commands.values()]
        for usage, summary in entries + list(self.extensions.values()):
            if len(usage) > _USAGE_WIDTH:
                self.say(f"  {usage}")
                self.say(f"  {'':{_USAGE_WIDTH}}  {summary}")
            else:
                self.say(f"  {usage:{_USAGE_WIDTH}}  {summary}")
        if self.extensions:
            self.say(f"Extensions of this server: {', '.join(self.extensions)}.")
        self.say("Console: help [COMMAND], quit (or exit, or end of input).")

    def completions(self, before: str, text: str) -> list[str]:
        """What ``text`` (the word being typed) may complete to, after ``before``."""
        words = before.split()
        if words and not (len(words) == 1 and words[0].lower() in HELP_WORDS):
            return []
        names: list[str] = [*self.commands, *self.extensions]
        if not words:
            names += ["help", *QUIT_WORDS]
        prefix = REQUEST if text.startswith(REQUEST) else ""
        return [prefix + name for name in names if name.startswith(text[len(prefix):])]

    def run(self, read: Callable[[], str]) -> int:
        """Read lines with ``read`` until quit or end of input; return the exit status (0).

        A reply that times out, a lost connection, a server that cannot be
        reached and Ctrl-C while waiting are reported; the console goes on,
        and the next request reconnects.
        """
        while True:
            try:
                line = read()
            except EOFError:
                return 0
            except KeyboardInterrupt:
                write_line("", self.output)
                continue
            try:
                if not self.handle(line):
                    return 0
            except ClientError as error:
                self.say(f"error: {error}", "error")
                self._lost()
            except KeyboardInterrupt:  # Ctrl-C while waiting: the reply is abandoned
                self.say("error: interrupted while waiting for the reply", "error")
                self.close()  # its late reply would answer the next request
                self._lost()

    def _lost(self) -> None:
        """After a connection error: close what is left, say what happens next."""
        self.close()
        self.say("not connected: the next request reconnects", "note")


class _LineEditor:
    """readline set-up: history file and completion (best effort)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.history = os.path.expanduser(HISTORY_FILE)
        self._readline: Any = None
        self._matches: list[str] = []

    def __enter__(self) -> _LineEditor:
        try:
            import readline
        except ImportError:  # pragma: no cover - no readline on this platform
            return self
        self._readline = readline
        try:
            readline.read_history_file(self.history)
        except OSError:
            pass
        readline.set_history_length(HISTORY_LENGTH)
        readline.set_completer_delims(" \t,")
        readline.set_completer(self._complete)
        if "libedit" in (readline.__doc__ or ""):  # pragma: no cover - macOS
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        return self

    def __exit__(self, *exception: object) -> None:
        if self._readline is not None:
            self._readline.set_completer(None)
            try:
                self._readline.write_history_file(self.history)
            except OSError:
                pass

    def _complete(self, text: str, state: int) -> str | None:
        if state == 0:
            readline = self._readline
            before = readline.get_line_buffer()[:readline.get_begidx()]
            self._matches = self.console.completions(before, text)
        return self._matches[state] if state < len(self._matches) else None


def _use_colour(choice: str, stream: TextIO) -> bool:
    if choice != "auto":
        return choice == "always"
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


def add_parser(subparsers: Any) -> None:
    """Add the ``console`` subcommand."""
    parser = subparsers.add_parser(
        "console", help="talk to a backend interactively",
        description="Send requests typed at a prompt and show the replies.  "
                    "Type help for the commands, quit to leave.")
    add_connection_arguments(parser)
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the replies (auto: on a terminal, unless NO_COLOR "
                             "is set)")
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    """Run the console; return the exit status."""
    try:
        address = parse_address(arguments.address)
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    console = Console(partial(BlockingClient.connect, address, timeout=arguments.timeout),
                      sys.stdout, colour=_use_colour(arguments.color, sys.stdout))
    try:
        console.open()
    except (ClientError, ValueError) as error:
        raise CommandLineError(str(error)) from None
    try:
        console.greet()
        if not sys.stdin.isatty():
            return console.run(input)
        with _LineEditor(console):
            return console.run(lambda: input(PROMPT))
    finally:
        console.close()
