"""The DISCOS backend protocol grammar: one line in, one :class:`Message` out.

This module is sans-IO: it knows nothing of sockets or Twisted.  It turns a
line of text into a :class:`Message` (:func:`parse_message`) and a message
back into text (``str(message)``), applying the protocol's escapes::

    message  = type name *( "," argument )
    type     = "?" (request) | "!" (reply)
    name     = ALPHA *( ALPHA | DIGIT | "-" )
    argument = *( plain | "\\\\" | "\\t" | "\\," )

A reply's first field is its return code (``ok``, ``fail`` or ``invalid``).
CR, LF, NUL and ESC cannot be represented: a line holding one does not parse,
and a message holding one cannot be built.  Every error is a
:class:`GrammarException` whose ``reason`` is fit for an ``invalid`` reply.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

__all__ = [
    "REQUEST", "REPLY", "SEPARATOR", "OK", "FAIL", "INVALID", "RETURN_CODES",
    "UNDEFINED_NAME", "GrammarException", "Message", "parse_message",
    "parse_line", "serialize_line", "request", "reply", "ok", "fail",
    "invalid", "is_valid_name", "escape", "split_arguments", "ok_line", "name_of",
    "request_pattern", "reply_pattern",
]

REQUEST = "?"
REPLY = "!"
SEPARATOR = ","
OK = "ok"
FAIL = "fail"
INVALID = "invalid"
RETURN_CODES = frozenset((OK, FAIL, INVALID))
#: The name an ``invalid`` reply carries when the request's name is unreadable.
UNDEFINED_NAME = "undefined"
#: How lines travel on the wire: any byte sequence round-trips unchanged.
ENCODING = "utf-8"
ENCODING_ERRORS = "surrogateescape"
EOL = "\r\n"
#: How many bytes of a line :func:`name_of` reads to find the name.
NAME_PREFIX = 64

_UNESCAPES = {"\\": "\\", "t": "\t", ",": ","}
_CONTROL_NAMES = {"\r": "CR", "\n": "LF", "\x00": "NUL", "\x1b": "ESC"}
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_SPECIAL_RE = re.compile(r"[\\,\r\n\x00\x1b]")
_CONTROL_RE = re.compile(r"[\r\n\x00\x1b]")
_NEEDS_ESCAPE_RE = re.compile(r"[\\,\t]")
_ESCAPE_TABLE = str.maketrans({"\\": "\\\\", ",": "\\,", "\t": "\\t"})
_SHOWN_CHARS = 40

#: A request line as a regular expression, with the groups ``type``, ``name``
#: and ``arguments`` (still escaped), as discos-backend 1.4 had it.  The
#: library itself parses with :func:`parse_message`, which also checks
#: escapes and control characters.
request_pattern = re.compile(
    r"(?P<type>\?)(?P<name>[A-Za-z][A-Za-z0-9-]*)(?:,(?P<arguments>[^\r\n]*))?(?:\r\n)?\Z")
#: A reply line, with the groups ``type``, ``name``, ``code`` and ``arguments``.
reply_pattern = re.compile(
    r"(?P<type>!)(?P<name>[A-Za-z][A-Za-z0-9-]*),(?P<code>ok|fail|invalid)"
    r"(?:,(?P<arguments>[^\r\n]*))?(?:\r\n)?\Z")
_NAME_CACHE: dict[str, bool] = {}
_HEADS: dict[str, tuple[str, str]] = {}
_NAME_CACHE_SIZE = 1024


class GrammarException(ValueError):
    """A line that does not parse, or a message that cannot be written.

    ``reason`` is a short human-readable sentence, its key word first, fit
    for the reason field of an ``invalid`` reply.  ``name`` is the message's
    name when it could be read (so the reply can carry it), else ``None``.
    """

    def __init__(self, reason: str, name: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.name = name


def _show(text: str) -> str:
    """Quote a piece of the offending input for an error reason, briefly."""
    if len(text) > _SHOWN_CHARS:
        return repr(text[:_SHOWN_CHARS]) + "..."
    return repr(text)


def is_valid_name(name: str) -> bool:
    """Return whether ``name`` is a well-formed command name."""
    known = _NAME_CACHE.get(name)
    if known is None:
        known = _NAME_RE.fullmatch(name) is not None
        if len(_NAME_CACHE) < _NAME_CACHE_SIZE:
            _NAME_CACHE[name] = known
    return known


def _check_argument(argument: object, position: int) -> str:
    if not isinstance(argument, str):
        raise GrammarException(
            f"argument {position} is a {type(argument).__name__}, not a str")
    control = _CONTROL_RE.search(argument)
    if control is not None:
        raise GrammarException(
            f"argument {position} holds a {_CONTROL_NAMES[control.group()]} "
            "character, which the protocol cannot carry")
    return argument


def escape(argument: str) -> str:
    """Escape ``\\``, ``,`` and TAB in one argument for the wire."""
    if _NEEDS_ESCAPE_RE.search(argument) is None:
        return argument
    return argument.translate(_ESCAPE_TABLE)


class Message:
    """One protocol message, request or reply.

    ``Message(message_type=REQUEST, name="status")`` builds a request;
    ``Message(message_type=REPLY, name="status", code=OK, arguments=[...])``
    a reply.  What is given is checked at once (a bad type, name, code or
    argument raises :class:`GrammarException`).  As in discos-backend 1.4 the
    attributes may be set later, and a reply may be built without its code
    and given it afterwards: :meth:`check_synthax` checks the whole message,
    and ``str(message)``, its wire form without the line end, raises
    :class:`GrammarException` for a message that cannot be written.
    """

    __slots__ = ("message_type", "name", "code", "arguments")

    def __init__(self, message_type: str, name: str,
                 code: str | None = None,
                 arguments: Iterable[str] | None = None) -> None:
        if isinstance(arguments, (str, bytes)):
            raise GrammarException("arguments must be a list of str, not a single "
                                   f"{type(arguments).__name__}",
                                   name if isinstance(name, str) else None)
        self.message_type = message_type
        self.name = name
        self.code: str | None = None if code == "" else code  # 1.4 used "" for none
        self.arguments: list[str] = list(arguments) if arguments else []
        self._check(complete=False)

    def check_synthax(self) -> bool:
        """Return ``True`` if the message can be written on the wire.

        Raises :class:`GrammarException` saying what is wrong otherwise (the
        1.4 spelling of the name is kept).
        """
        self._check(complete=True)
        return True

    def _check(self, complete: bool) -> None:
        """Check the message; a reply's missing code is an error only if ``complete``."""
        message_type, name, code = self.message_type, self.name, self.code
        if message_type not in (REQUEST, REPLY):
            raise GrammarException(
                f"bad message type {_show(str(message_type))}: "
                f"use '{REQUEST}' or '{REPLY}'")
        if not (isinstance(name, str) and is_valid_name(name)):
            raise GrammarException(
                f"bad name {_show(str(name))}: a name is a letter followed by "
                "letters and digits and '-'")
        if message_type == REPLY:
            if (code is not None or complete) and not (isinstance(code, str)
                                                       and code in RETURN_CODES):
                raise GrammarException(
                    f"bad return code {_show(str(code))}: a reply needs "
                    f"'{OK}' or '{FAIL}' or '{INVALID}'", name)
        elif code is not None and code != "":
            raise GrammarException(f"a request has no return code, got {_show(str(code))}",
                                   name)
        arguments = self.arguments
        try:
            text = "".join(arguments)
            representable = text.isprintable() or _CONTROL_RE.search(text) is None
        except TypeError:
            representable = False
        if not representable:  # find the culprit, for the error message
            for position, argument in enumerate(arguments, 1):
                _check_argument(argument, position)

    def is_request(self) -> bool:
        """Return whether this is a request (``?``)."""
        return self.message_type == REQUEST

    def is_reply(self) -> bool:
        """Return whether this is a reply (``!``)."""
        return self.message_type == REPLY

    def is_correct_reply(self, request_message: Message) -> bool:
        """Return whether this message is a well-formed reply to ``request_message``."""
        return (self.message_type == REPLY and request_message.message_type == REQUEST
                and self.name == request_message.name)

    def __str__(self) -> str:
        self._check(complete=True)
        head = self.message_type + self.name
        if self.code is not None:  # a reply's (checked above)
            head += SEPARATOR + self.code
        arguments = self.arguments
        if not arguments:
            return head
        body = SEPARATOR.join(arguments)
        if _plain(body, len(arguments)):
            return head + SEPARATOR + body
        return head + SEPARATOR + SEPARATOR.join(escape(argument) for argument in arguments)

    def __repr__(self) -> str:
        return (f"Message(message_type={self.message_type!r}, name={self.name!r}, "
                f"code={self.code!r}, arguments={self.arguments!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.message_type == other.message_type and self.name == other.name
                and self.code == other.code and self.arguments == other.arguments)

    __hash__ = None  # type: ignore[assignment]  # a message can change


def _plain(body: str, count: int) -> bool:
    """Whether ``count`` arguments joined into ``body`` need no escape or check."""
    return body.isprintable() and "\\" not in body and body.count(SEPARATOR) == count - 1


def _trusted_message(message_type: str, name: str, code: str | None,
                     arguments: list[str]) -> Message:
    """Build a message from parts already checked, skipping the checks."""
    message = _new_message(Message)
    message.message_type = message_type
    message.name = name
    message.code = code
    message.arguments = arguments
    return message


_new_message = Message.__new__


def _strip_eol(line: str) -> str:
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    return line


def parse_message(line: str, line_end: bool = True) -> Message:
    """Parse one line (a trailing CR LF or LF is dropped) into a :class:`Message`.

    With ``line_end=False`` the line comes without its end, so a trailing
    CR or LF is a control character like any other.  Raises
    :class:`GrammarException` if the line breaks the grammar.
    """
    # Fast path: no escapes, no control characters (so no EOL either): a
    # plain split is the whole story.  Anything else, and every error, goes
    # through the full scanner.
    if not line.isprintable() or "\\" in line:
        if line_end:
            line = _strip_eol(line)
        if not line.isprintable() or "\\" in line:
            return _parse_carefully(line)
    fields = line.split(SEPARATOR)
    known = _HEADS.get(fields[0]) or _learn_head(fields[0])
    if known is not None:
        if known[0] == REQUEST:
            del fields[0]
            return _trusted_message(REQUEST, known[1], None, fields)
        code = fields[1] if len(fields) > 1 else ""
        if code in RETURN_CODES:
            del fields[:2]
            return _trusted_message(REPLY, known[1], code, fields)
    return _parse_carefully(line)


def _learn_head(head: str) -> tuple[str, str] | None:
    """Split a line's first field into (type, name) if valid, remembering it."""
    kind = head[:1]
    name = head[1:]
    if kind not in (REQUEST, REPLY) or not kind or not is_valid_name(name):
        return None
    if len(_HEADS) < _NAME_CACHE_SIZE:
        _HEADS[head] = (kind, name)
    return kind, name


def _parse_carefully(line: str) -> Message:
    """The full scanner: handles escapes and explains every error."""
    if not line:
        raise GrammarException("empty line")
    kind = line[0]
    if kind not in (REQUEST, REPLY):
        raise GrammarException(
            f"bad message type {_show(kind)}: a line starts with "
            f"'{REQUEST}' or '{REPLY}'")
    comma = line.find(SEPARATOR)
    name = line[1:] if comma < 0 else line[1:comma]
    if not name:
        raise GrammarException("missing name after the message type")
    if not is_valid_name(name):
        raise GrammarException(
            f"bad name {_show(name)}: a name is a letter followed by letters "
            "and digits and '-'")
    arguments = [] if comma < 0 else _scan_arguments(line, comma + 1, name)
    if kind == REQUEST:
        return _trusted_message(REQUEST, name, None, arguments)
    if not arguments:
        raise GrammarException("missing return code in reply", name)
    code = arguments.pop(0)
    if code not in RETURN_CODES:
        raise GrammarException(
            f"bad return code {_show(code)}: a reply needs "
            f"'{OK}' or '{FAIL}' or '{INVALID}'", name)
    return _trusted_message(REPLY, name, code, arguments)


def _scan_arguments(line: str, position: int, name: str) -> list[str]:
    """Split and unescape the arguments of ``line`` starting at ``position``."""
    arguments: list[str] = []
    pieces: list[str] = []
    end = len(line)
    while True:
        special = _SPECIAL_RE.search(line, position)
        stop = end if special is None else special.start()
        pieces.append(line[position:stop])
        if special is None:
            arguments.append("".join(pieces))
            return arguments
        char = special.group()
        if char == SEPARATOR:
            arguments.append("".join(pieces))
            pieces = []
            position = stop + 1
        elif char == "\\":
            if stop + 1 >= end:
                raise GrammarException("lone backslash at end of line", name)
            escaped = line[stop + 1]
            unescaped = _UNESCAPES.get(escaped)
            if unescaped is None:
                shown = "\\" + escaped if escaped.isprintable() else _show("\\" + escaped)
                raise GrammarException(
                    f"unknown escape {shown} in argument {len(arguments) + 1} "
                    "(the escapes are \\\\ and \\t and a backslash before a comma)", name)
            pieces.append(unescaped)
            position = stop + 2
        else:
            raise GrammarException(
                f"control character {_CONTROL_NAMES[char]} in argument "
                f"{len(arguments) + 1}", name)


def split_arguments(text: str, name: str) -> list[str]:
    """Split and unescape the arguments of a request ``name``: ``text`` is
    everything after the comma that follows the name.

    Raises :class:`GrammarException` (carrying ``name``) if they break the
    grammar.
    """
    if text.isprintable() and "\\" not in text:
        return text.split(SEPARATOR)
    return _scan_arguments(text, 0, name)


def parse_line(data: bytes, line_end: bool = True) -> Message:
    """Decode one line of wire bytes (UTF-8, surrogateescape) and parse it.

    ``line_end`` is as for :func:`parse_message`.
    """
    return parse_message(data.decode(ENCODING, ENCODING_ERRORS), line_end)


def name_of(line: bytes) -> str:
    """The request name at the start of a line, broken or cut short, or ``undefined``.

    For replying ``invalid`` to a line that does not parse or is too long:
    only the first :data:`NAME_PREFIX` bytes are looked at.  A line that
    starts with neither ``?`` nor ``!`` has no name (``hello``: not ``ello``).
    """
    if line[:1] not in (b"?", b"!"):
        return UNDEFINED_NAME
    head, comma, _ = line[1:NAME_PREFIX].partition(b",")
    if not comma and len(line) >= NAME_PREFIX:
        return UNDEFINED_NAME  # the name goes on past what we looked at
    name = head.decode("ascii", "replace")
    return name if is_valid_name(name) else UNDEFINED_NAME


def serialize_line(message: Message) -> bytes:
    """The wire bytes of ``message``, CR LF included."""
    try:
        return (str(message) + EOL).encode(ENCODING, ENCODING_ERRORS)
    except UnicodeEncodeError as error:
        raise GrammarException(
            f"unencodable character at {error.start} in message "
            f"{_show(message.name)}", message.name) from None


def request(name: str, *arguments: str) -> Message:
    """Build a request ``?name,arguments...``."""
    return Message(REQUEST, name, None, arguments)


def reply(name: str, code: str, *arguments: str) -> Message:
    """Build a reply ``!name,code,arguments...``."""
    return Message(REPLY, name, code, arguments)


def _plain_ok_text(name: str, values: Sequence[str]) -> str | None:
    """The wire form of ``ok`` reply ``values`` that need no escape or check, else ``None``."""
    if not _NAME_CACHE.get(name):
        return None
    if not values:
        return f"{REPLY}{name},{OK}"
    try:
        body = SEPARATOR.join(values)
    except TypeError:
        return None  # not all str: let the constructor explain
    # What _plain() checks, inline: this is every server's hot path.
    if body.isprintable() and "\\" not in body and body.count(SEPARATOR) == len(values) - 1:
        return f"{REPLY}{name},{OK},{body}"
    return None


def ok(name: str, *values: str) -> Message:
    """Build the ``ok`` reply to command ``name`` with its ``values``."""
    if _plain_ok_text(name, values) is None:
        return Message(REPLY, name, OK, values)
    return _trusted_message(REPLY, name, OK, list(values))


def ok_line(name: str, values: Sequence[str]) -> bytes:
    """The wire bytes (CR LF included) of the ``ok`` reply to ``name`` with ``values``.

    The same as ``serialize_line(ok(name, *values))``, without building the
    message when the values need no escape.
    """
    text = _plain_ok_text(name, values)
    if text is None:
        return serialize_line(Message(REPLY, name, OK, values))
    return (text + EOL).encode(ENCODING, ENCODING_ERRORS)


def fail(name: str, reason: str) -> Message:
    """Build the ``fail`` reply to command ``name``, giving ``reason``."""
    return Message(REPLY, name, FAIL, (reason,))


def invalid(name: str, reason: str) -> Message:
    """Build the ``invalid`` reply to command ``name``, giving ``reason``."""
    return Message(REPLY, name, INVALID, (reason,))
