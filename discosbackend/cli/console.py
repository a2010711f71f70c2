"""``discos-backend console HOST:PORT``: talk to a backend interactively.

Type requests with or without their leading ``?`` (``get-tpi,0,0``); each
reply is printed as received, coloured by its code on a terminal.  ``help``
lists the commands from the same declarations the server uses, ``help
NAME`` shows one; ``quit``, ``exit`` or end of input leaves.  On a terminal
the line editor has history (kept in ``~/.discos_backend_history``) and
completes command names with TAB.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Iterable, TextIO

from discosbackend.cli import CommandLineError
from discosbackend.cli.send import add_connection_arguments, parse_request_line, write_line
from discosbackend.client.address import parse_address
from discosbackend.client.blocking import BlockingClient
from discosbackend.client.errors import ClientError
from discosbackend.commands import COMMANDS, Command
from discosbackend.grammar import FAIL, INVALID, OK, REQUEST

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

    ``client`` is a connected :class:`BlockingClient`; output goes to
    ``output``, with ANSI colours when ``colour`` is true.
    """

    def __init__(self, client: BlockingClient, output: TextIO, *, colour: bool = False,
                 commands: dict[str, Command] | None = None) -> None:
        self.client = client
        self.output = output
        self.colour = colour
        self.commands = commands if commands is not None else COMMANDS

    def say(self, text: str, kind: str | None = None) -> None:
        """Print ``text``, coloured for ``kind`` (a return code, ``error``, ``note``)."""
        if self.colour and kind in _COLOURS:
            text = _COLOURS[kind] + text + _RESET
        write_line(text, self.output)

    def greet(self) -> None:
        """Show where we are connected, the greeting, and how to get help."""
        self.say(f"connected to {self.client.address}", "note")
        self.say(self.client.greeting_line, OK)
        self.say("type help for the commands, quit to leave", "note")

    def handle(self, line: str) -> bool:
        """Act on one typed line; return ``False`` when the console should end.

        Raises :class:`~discosbackend.client.errors.ClientError` when the
        connection is lost.
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
        reply, received = self.client.exchange(message)
        self.say(received, reply.code)
        return True

    def help(self, topic: str | None = None) -> None:
        """List the commands, or describe the command ``topic``."""
        if topic is not None:
            command = self.commands.get(topic.lstrip(REQUEST))
            if command is None:
                self.say(f"error: unknown command {topic!r}: type help for the list", "error")
                return
            for text in _describe(command):
                self.say(text)
            return
        self.say("Requests: NAME[,ARGUMENT...], with or without the leading '?'. Commands:")
        for command in self.commands.values():
            usage = command.usage()
            if len(usage) > _USAGE_WIDTH:
                self.say(f"  {usage}")
                self.say(f"  {'':{_USAGE_WIDTH}}  {command.summary}")
            else:
                self.say(f"  {usage:{_USAGE_WIDTH}}  {command.summary}")
        self.say("Console: help [COMMAND], quit (or exit, or end of input).")

    def completions(self, before: str, text: str) -> list[str]:
        """What ``text`` (the word being typed) may complete to, after ``before``."""
        words = before.split()
        if words and not (len(words) == 1 and words[0].lower() in HELP_WORDS):
            return []
        names: Iterable[str] = self.commands
        if not words:
            names = [*self.commands, "help", *QUIT_WORDS]
        prefix = REQUEST if text.startswith(REQUEST) else ""
        return [prefix + name for name in names if name.startswith(text[len(prefix):])]

    def run(self, read: Callable[[], str]) -> int:
        """Read lines with ``read`` until quit or EOF; return the exit status."""
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
                return 2


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
        client = BlockingClient.connect(parse_address(arguments.address),
                                        timeout=arguments.timeout)
    except (ClientError, ValueError) as error:
        raise CommandLineError(str(error)) from None
    with client:
        console = Console(client, sys.stdout, colour=_use_colour(arguments.color, sys.stdout))
        console.greet()
        if not sys.stdin.isatty():
            return console.run(input)
        with _LineEditor(console):
            return console.run(lambda: input(PROMPT))
