"""What a conforming exchange looks like, judged line by line (sans-IO).

The protocol's rules about raw wire lines, written once for everything that
judges a backend or a client: the conformance checks
(:mod:`discosbackend.testing.checks`), the proxy (:mod:`discosbackend.proxy`)
and the replay (:mod:`discosbackend.testing.replay`).

- :func:`framing_problem`, :func:`value_problem`, :func:`ok_values_problem`:
  one rule each (CR LF, one value of the command table, a whole ``ok``
  reply).
- :class:`Conversation`: one connection's lines in order; it pairs each
  reply with the request it answers and lists every problem of both:
  grammar, framing, the reply's name and code, the command table's value
  shapes, the 512-byte buffer of the real client and the replies that crash
  it.
- :class:`LineBuffer`: a byte stream cut into lines, each kept exactly as it
  came (terminator included), so that framing can be judged.
- :func:`show`: a line as a report shows it.
"""

from __future__ import annotations

import re
from collections import deque
from typing import NamedTuple, Sequence

from discosbackend.commands import COMMANDS, TIMESTAMP, VERSION, ArgumentError, Command, ReplyValue
from discosbackend.grammar import (ENCODING, ENCODING_ERRORS, FAIL, INVALID, OK, UNDEFINED_NAME,
                                   GrammarException, Message, parse_message)

__all__ = ["REAL_CLIENT_BUFFER", "FATAL_FAILS", "REPLY_TIMESTAMP_FORM", "show", "show_lines",
           "parse_raw", "framing_problem", "is_version_reply", "version_of", "value_problem",
           "ok_values_problem", "request_problems", "Conversation", "LineBuffer"]

#: The real client's receive buffer: a reply line this long or longer overflows it.
REAL_CLIENT_BUFFER = 512
#: Commands whose ``fail`` reply the real client does not handle: it ends the
#: DISCOS component (std::terminate).
FATAL_FAILS = frozenset(("set-integration", "cal-on", "set-enable", "set-shift"))
#: How a timestamp in a reply is written (never ACS ticks, unlike requests).
REPLY_TIMESTAMP_FORM = "unix seconds with exactly 7 decimals"

_REPLY_TIMESTAMP = re.compile(TIMESTAMP.wire)
_SHOWN = 200
_SHOWN_VALUE = 40
_VISIBLE = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}
#: A "line" longer than this (no LF in sight) is handed over as it is.
_MAX_LINE = 1024 * 1024


def show(data: bytes | str) -> str:
    """A line as a report shows it.

    A final CR LF is left off (it is what a line should end with); any other
    CR, LF or TAB is written as ``\\r``, ``\\n``, ``\\t`` and other control
    characters as ``\\xNN``, so a bare LF terminator shows as ``\\n``.
    """
    text = data.decode(ENCODING, ENCODING_ERRORS) if isinstance(data, bytes) else data
    if text.endswith("\r\n"):
        text = text[:-2]
    if not text:
        return "(empty line)"
    pieces = []
    for char in text[:_SHOWN]:
        if char in _VISIBLE:
            pieces.append(_VISIBLE[char])
        elif char.isprintable():
            pieces.append(char)
        else:  # a control character, or a byte that is not UTF-8 (surrogateescape)
            code = ord(char)
            pieces.append(f"\\x{code - 0xdc00 if 0xdc80 <= code <= 0xdcff else code:02x}")
    return "".join(pieces) + ("..." if len(text) > _SHOWN else "")


def show_lines(lines: Sequence[bytes | str]) -> str:
    """Several lines as one report field, separated by `` | ``."""
    return " | ".join(show(line) for line in lines)


def _read(raw: bytes) -> Message | GrammarException:
    """The message the raw line holds (its line end dropped), or why it holds none."""
    try:
        return parse_message(raw.decode(ENCODING, ENCODING_ERRORS))
    except GrammarException as error:
        return error


def parse_raw(raw: bytes) -> Message | None:
    """The message a raw line holds (its line end dropped), or ``None`` if it holds none."""
    message = _read(raw)
    return message if isinstance(message, Message) else None


def framing_problem(raw: bytes) -> str | None:
    """Why ``raw``, a line as received, is not one line ending in CR LF; ``None`` if it is."""
    if not raw.endswith(b"\n"):
        return "no line end (the connection closed in the middle of the line)"
    if not raw.endswith(b"\r\n"):
        return "ends in a bare LF, not CR LF: the real client loses its last character"
    if b"\r" in raw[:-2]:
        return "holds a CR before its end"
    return None


def is_version_reply(message: Message | None) -> bool:
    """Whether ``message`` is ``!version,ok,<version>``."""
    return (message is not None and message.is_reply() and message.name == VERSION
            and message.code == OK and len(message.arguments) == 1
            and bool(message.arguments[0]))


def version_of(greeting: bytes | None) -> str | None:
    """The protocol version a greeting line announces, or ``None``."""
    message = parse_raw(greeting) if greeting is not None else None
    return message.arguments[0] if message is not None and is_version_reply(message) else None


def value_problem(value: ReplyValue, text: str) -> str | None:
    """Why ``text`` is not a valid ``value`` of an ``ok`` reply; ``None`` if it is."""
    if value.kind is TIMESTAMP:
        valid = _REPLY_TIMESTAMP.fullmatch(text) is not None
        expectation = REPLY_TIMESTAMP_FORM
    else:
        expectation = value.kind.expectation
        try:
            value.kind.parse(text)
            valid = True
        except ValueError:
            valid = False
    shown = text if len(text) <= _SHOWN_VALUE else text[:_SHOWN_VALUE] + "..."
    return None if valid else f"{value.name}: {expectation}, not {shown!r}"


def _values_wanted(command: Command) -> str:
    names = " ".join(value.name + ("..." if value.repeated else "") for value in command.reply)
    if not command.reply:
        return "no values"
    if command.reply[-1].repeated:
        return f"{len(command.reply) - 1} or more values ({names})"
    plural = "value" if len(command.reply) == 1 else "values"
    return f"{len(command.reply)} {plural} ({names})"


def ok_values_problem(command: Command, values: Sequence[str]) -> str | None:
    """Why ``values`` are not what ``command``'s ``ok`` reply carries; ``None`` if they are.

    Their count must fit the command table's reply, and each must be a
    valid value of its kind (:func:`value_problem`).
    """
    try:
        fitted = command.reply_values(len(values))
    except ArgumentError:
        return f"{_values_wanted(command)}, not {len(values)}"
    for value, text in zip(fitted, values):
        problem = value_problem(value, text)
        if problem is not None:
            return problem
    return None


class _Request(NamedTuple):
    """A request line, what it holds, and its problems (judged once, when it came)."""

    raw: bytes
    message: Message | GrammarException
    problems: list[str]


def _judged(raw: bytes, version: str | None) -> _Request:
    message = _read(raw)
    return _Request(raw, message, _request_problems(message, version))


def _request_problems(message: Message | GrammarException, version: str | None) -> list[str]:
    if isinstance(message, GrammarException):
        return [f"does not parse ({message.reason}): the server answers invalid"]
    if not message.is_request():
        return ["starts with '!', not '?': the server answers invalid"]
    command = COMMANDS.get(message.name)
    if command is None or not command.served_in(version):
        where = f" in protocol {version}" if command is not None else ""
        return [f"unknown command {message.name!r}{where}: the server answers invalid "
                "(unless it is one of its extensions)"]
    try:
        command.parse_arguments(message.arguments)
    except ArgumentError as error:
        return [f"bad arguments ({error}): the server answers fail"]
    return []


def request_problems(raw: bytes, version: str | None = None) -> list[str]:
    """What is wrong with the request line ``raw``, as a server speaking ``version`` sees it.

    A request may end in a bare LF; anything the server must refuse is a
    problem: a line that does not parse, an unknown command, wrong arguments.
    """
    return _judged(raw, version).problems


def _reply_problems(request: _Request, raw: bytes, version: str | None) -> list[str]:
    """What is wrong with ``raw`` as the reply to ``request``."""
    problems = []
    framing = framing_problem(raw)
    if framing is not None:
        problems.append(framing)
    if len(raw) >= REAL_CLIENT_BUFFER:
        problems.append(f"{len(raw)} bytes: the real client's {REAL_CLIENT_BUFFER}-byte "
                        "buffer overflows")
    message = _read(raw)
    if isinstance(message, GrammarException) or not message.is_reply():
        why = (f"does not parse ({message.reason})" if isinstance(message, GrammarException)
               else "a request, not a reply")
        return problems + [f"{why}: the real client's parse fails outside its error handling"]
    asked = request.message
    if isinstance(asked, GrammarException) or not asked.is_request():
        # The server names its invalid reply after the request when it could
        # read the name, else "undefined": either is fine.
        named = asked.name if isinstance(asked, Message) else asked.name or UNDEFINED_NAME
        if message.name not in (named, UNDEFINED_NAME) or message.code != INVALID:
            problems.append(f"!{message.name},{message.code} answers a line that is not a "
                            f"request: expected !{named},invalid,<reason>")
        return problems
    if message.name != asked.name:
        return problems + [f"answers {message.name!r}, not the request {asked.name!r}"]
    refused = request.problems
    if message.code != OK:
        return problems + _refusal_problems(message, asked, version, bool(refused))
    command = COMMANDS.get(asked.name)
    if command is not None and command.served_in(version):
        if refused:
            problems.append(f"ok to a request the server must refuse: {refused[0]}")
        else:
            shape = ok_values_problem(command, message.arguments)
            if shape is not None:
                problems.append(f"not the table's !{command.name},ok reply: {shape}")
    if b"\\" in raw:
        problems.append("holds an escape: the real client does not unescape, it splits on "
                        "every comma")
    return problems


def _refusal_problems(message: Message, asked: Message, version: str | None,
                      refused: bool) -> list[str]:
    """What is wrong with a ``fail`` or ``invalid`` reply to ``asked``.

    ``refused``: the request itself is one the server must refuse.
    """
    problems = []
    if not message.arguments or not message.arguments[0].strip():
        problems.append(f"{message.code} without a reason: the real client throws its own "
                        "error")
    command = COMMANDS.get(asked.name)
    if message.code == FAIL and command is None:
        problems.append(f"fail to an unknown command: expected !{asked.name},invalid,<reason> "
                        "(unless it is one of the server's extensions)")
    elif message.code == INVALID and command is not None and command.served_in(version):
        problems.append("invalid to a known command: expected ok, or fail with a reason")
    if message.code == FAIL and asked.name in FATAL_FAILS and not refused:
        problems.append(f"fail to {asked.name}: the real client does not handle it, the "
                        "DISCOS component ends (std::terminate)")
    return problems


class Conversation:
    """One connection's lines in order: pairs replies with requests and judges both.

    Feed it every line the client sends (:meth:`request`) and every line the
    server sends (:meth:`reply`), in the order they come, terminators
    included.  The first server line is the greeting; after it, replies answer
    requests first in, first out.  Each call returns the problems it found
    (sentences, empty when all is well).
    """

    def __init__(self) -> None:
        #: The greeting line, once the server sent it.
        self.greeting: bytes | None = None
        #: The protocol version the greeting announced.
        self.server_version: str | None = None
        self._pending: deque[_Request] = deque()
        self._greeted = False

    @property
    def pending(self) -> int:
        """How many requests wait for their reply."""
        return len(self._pending)

    def request(self, raw: bytes) -> list[str]:
        """A line the client sent: its problems."""
        request = _judged(raw, self.server_version)
        self._pending.append(request)
        return request.problems

    def reply(self, raw: bytes) -> tuple[bytes | None, list[str]]:
        """A line the server sent: the request it answers (``None``: none) and its problems."""
        if not self._greeted:
            self._greeted = True
            message = parse_raw(raw)
            if is_version_reply(message) or not self._answers_first(message):
                return None, self._greeted_with(raw, message)
            answered, problems = self.reply(raw)
            return answered, ["no greeting: the server's first line answers the first "
                              "request"] + problems
        if not self._pending:
            return None, ["a reply when no request waits for one (an extra reply)"]
        request = self._pending.popleft()
        return request.raw, _reply_problems(request, raw, self.server_version)

    def _answers_first(self, message: Message | None) -> bool:
        """Whether ``message`` is a reply to the oldest waiting request."""
        first = self._pending[0].message if self._pending else None
        return (isinstance(first, Message) and message is not None and message.is_reply()
                and message.name == first.name)

    def _greeted_with(self, raw: bytes, message: Message | None) -> list[str]:
        self.greeting = raw
        problems = []
        framing = framing_problem(raw)
        if framing is not None:
            problems.append(f"the greeting {framing}")
        if not is_version_reply(message):
            problems.append("the greeting is not !version,ok,<version>")
        else:
            assert message is not None
            self.server_version = message.arguments[0]
        return problems

    def close(self) -> list[str]:
        """The connection closed: requests left without a reply are a problem."""
        count, self._pending = len(self._pending), deque()
        if not count:
            return []
        return [f"the connection closed with {count} request{'s' if count > 1 else ''} "
                "unanswered"]


class LineBuffer:
    """Cuts a byte stream into lines, each kept exactly as it came, LF included.

    A "line" longer than ``limit`` bytes with no LF in sight is handed over as
    it is, so memory stays bounded.
    """

    def __init__(self, limit: int = _MAX_LINE) -> None:
        self.limit = limit
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes, in order."""
        pieces = (self._buffer + data).split(b"\n")
        rest = pieces.pop()
        lines = [piece + b"\n" for piece in pieces]
        if len(rest) > self.limit:
            lines.append(rest)
            rest = b""
        self._buffer = rest
        return lines

    def rest(self) -> bytes:
        """What came after the last LF (an unterminated line), now taken out."""
        rest, self._buffer = self._buffer, b""
        return rest
