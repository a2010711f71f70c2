"""The protocol's commands, each declared once.

A :class:`Command` names its backend method, its arguments (each with a
:class:`Kind` that parses it from the wire) and the shape of its ``ok``
reply (each value with a :class:`Kind` that formats it for the wire).  The
server validates and dispatches from these declarations, the client parses
replies with them, and the command line's help text is drawn from them.

Backends add their own commands with the :func:`command` decorator.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from operator import call
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, TypeVar

from discosbackend import timediscos
from discosbackend.errors import ArgumentError, ReplyShapeError
from discosbackend.grammar import (ENCODING, ENCODING_ERRORS, EOL, OK, REPLY, SEPARATOR,
                                   is_valid_name, ok_line)
from discosbackend.wording import counted

__all__ = [
    "ArgumentError", "ReplyShapeError", "Kind", "Argument", "ReplyValue", "Command", "command",
    "INTEGER", "NON_NEGATIVE_INTEGER", "FLOAT", "TEXT", "WORD", "BOOLEAN",
    "TIMESTAMP", "UNCHANGED", "COMMANDS", "VERSION", "HELP", "LIBRARY_COMMANDS", "commands_of",
    "reason_text", "PROTOCOL_VERSIONS", "CLIENT", "EXTENSION", "check_protocol_version",
]

#: A ``set-section`` argument given as ``*``: leave that setting unchanged.
UNCHANGED = "*"
#: The command the library answers itself (and whose reply is the greeting).
VERSION = "version"
#: The published protocol versions, oldest first; the library speaks the last
#: by default and can speak any of them.
PROTOCOL_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4")
#: The ``since`` of a command the real client sends that no published version
#: lists (``get-rms``): whether a server has it does not follow from its version.
CLIENT = "client"
#: The ``since`` of a backend's own commands (see :func:`command`).
EXTENSION = "extension"
#: The library's extension command listing what a server answers (not in the protocol).
HELP = "help"

_INTEGER_RE = re.compile(r"-?[0-9]+")
# Text a reply cannot carry: control characters but TAB (which is escaped),
# and lone surrogates, but for those that stand for undecodable bytes.
_UNSENDABLE_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udc7f\udd00-\udfff]")
# Each character can be read one way only (digits, then a point only before
# the fraction), so a failed match costs time linear in the text's length:
# "[0-9]+\.?[0-9]*" split runs of digits in all possible ways, quadratic.
_FLOAT_RE = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_REASON_LIMIT = 200
_REASON_BYTES = 300
_BREAKS_RE = re.compile(r"[\s\x00-\x1f\x7f]+")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SHOWN_VALUE = 60
T = TypeVar("T")


def reason_text(text: object) -> str:
    """Make ``text`` safe as a reply reason: one line, no commas, short.

    The real DISCOS client splits replies on every comma and keeps only the
    first word of a reason, and reads a reply into a 512-byte buffer: commas
    become ``;``, whitespace runs and control characters one space, lone
    surrogates ``?``, and a reason longer than 200 characters is cut, ending
    in ``…``.
    """
    cleaned = str(text)[:_REASON_LIMIT + 1]  # what could be kept, and one more
    cleaned = _BREAKS_RE.sub(" ", _SURROGATE_RE.sub("?", cleaned)).strip().replace(",", ";")
    if len(cleaned) > _REASON_LIMIT:
        cleaned = cleaned[:_REASON_LIMIT - 1] + "…"
    encoded = cleaned.encode()
    if len(encoded) > _REASON_BYTES:  # wide characters: cut by bytes as well
        cleaned = encoded[:_REASON_BYTES - 3].decode(errors="ignore") + "…"
    return cleaned


@dataclass(frozen=True)
class Kind:
    """A type of value on the wire: how to parse it and how to write it.

    ``format`` writes any value a backend may give, or raises ``ValueError``.
    A value of exactly the ``native`` type is written by the printf
    ``conversion`` as well, giving the same text: that is how a command
    writes a whole reply line in one ``%`` operation.  ``wire`` is a regular
    expression of the texts written that way that are valid and need no
    escape; for anything else the command falls back to ``format``.
    """

    name: str
    expectation: str
    parse: Callable[[str], Any]
    format: Callable[[Any], str]
    native: type | None = None
    conversion: str = "%s"
    wire: str = ""
    #: What a backend may return for it, to say so when it returns something else.
    accepts: str = ""


def _parse_integer(text: str) -> int:
    if not _INTEGER_RE.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _parse_non_negative(text: str) -> int:
    value = _parse_integer(text)
    if value < 0:
        raise ValueError(text)
    return value


def _format_integer(value: Any) -> str:
    if isinstance(value, str):
        value = _parse_integer(value)
    number = int(value)
    if number != value:
        raise ValueError(value)
    return str(number)


def _parse_float(text: str) -> float:
    if not _FLOAT_RE.fullmatch(text):
        raise ValueError(text)
    number = float(text)
    if not math.isfinite(number):  # 1e999 overflows to inf
        raise ValueError(text)
    return number


def _format_float(value: Any) -> str:
    if isinstance(value, str):
        value = _parse_float(value)
    elif not isinstance(value, float) and getattr(value, "dtype", None) is not None:
        # A numpy float32 (or float16): its own shortest text, 2.2 and not
        # the 2.200000047683716 of the float64 it converts to.
        value = _parse_float(str(value))
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return repr(number)


def _parse_text(text: str) -> str:
    if not text:
        raise ValueError(text)
    return text


def _text_of(value: Any) -> str:
    """The text of a value given for a text field: a str, or a number written out.

    ``None`` and other objects are refused (their text would be a Python
    repr, not what the field means), and so is what the wire cannot carry.
    """
    if isinstance(value, str):
        text = value
    elif isinstance(value, numbers.Number) and not isinstance(value, bool):
        text = str(value)
    else:
        raise ValueError(value)
    if _UNSENDABLE_RE.search(text):
        raise ValueError(value)
    return text


def _format_text(value: Any) -> str:
    return _parse_text(_text_of(value))


def _parse_word(text: str) -> str:
    if not text or len(text.split()) != 1 or text.strip() != text:
        raise ValueError(text)
    return text


def _format_word(value: Any) -> str:
    if value.__class__ is str and value.isalnum():  # the usual case, e.g. "ok"
        return value
    return _parse_word(_text_of(value))


def _parse_boolean(text: str) -> bool:
    if text == "1":
        return True
    if text == "0":
        return False
    raise ValueError(text)


def _format_boolean(value: Any) -> str:
    if value is False:
        return "0"
    if value is True:
        return "1"
    if isinstance(value, str):
        return "1" if _parse_boolean(value) else "0"
    if value in (0, 1):  # bool, int, float or numpy scalar
        return "1" if value else "0"
    raise ValueError(value)


# What a text may hold to go on the wire as it is: no comma, backslash,
# control character (TAB included) or lone surrogate.
_PLAIN_TEXT = r"[^,\\\x00-\x1f\x7f\ud800-\udfff]+"

INTEGER = Kind("integer", "an integer", _parse_integer, _format_integer,
               int, "%d", r"-?[0-9]+", accepts="an integer")
NON_NEGATIVE_INTEGER = Kind("unsigned", "an integer >= 0", _parse_non_negative,
                            _format_integer, int, "%d", r"-?[0-9]+", accepts="an integer")
FLOAT = Kind("float", "a finite number", _parse_float, _format_float,
             float, "%r", r"-?[0-9]+(?:\.[0-9]+)?(?:e[-+][0-9]+)?",  # no nan, no inf
             accepts="a finite number")
TEXT = Kind("text", "a non-empty text", _parse_text, _format_text, str, "%s", _PLAIN_TEXT,
            accepts="a non-empty str")
WORD = Kind("word", "one word", _parse_word, _format_word,
            str, "%s", r"[^\s,\\\x00-\x1f\x7f\ud800-\udfff]+", accepts="a str of one word")
BOOLEAN = Kind("boolean", "1 or 0", _parse_boolean, _format_boolean, bool, "%d", "[01]",
               accepts="a bool (or 1 or 0)")
TIMESTAMP = Kind("timestamp",
                 "ACS 100 ns ticks (integer) or unix seconds (with a decimal point)",
                 timediscos.parse_request_timestamp, timediscos.format_reply_timestamp,
                 float, "%.7f", r"[0-9]+\.[0-9]{7}",  # not negative, and not -0.0
                 accepts="unix seconds or astropy Time or datetime")


@dataclass(frozen=True)
class Argument:
    """One argument of a command.

    ``optional`` arguments may be left off the end of a request; a missing
    one is passed as ``default`` if that is not ``None``, else not passed.
    ``wildcard`` allows ``*`` (passed as :data:`UNCHANGED`).  With
    ``zero_is_default`` a value of ``0`` is passed as ``None``.  A ``rest``
    argument, the last one, takes the rest of the line, commas included
    (the real client does not escape the commas of a file name).
    """

    name: str
    kind: Kind
    optional: bool = False
    default: Any = None
    wildcard: bool = False
    zero_is_default: bool = False
    rest: bool = False

    def parse(self, text: str) -> Any:
        """The Python value of this argument's wire ``text``."""
        if self.wildcard and text == UNCHANGED:
            return UNCHANGED
        try:
            value = self.kind.parse(text)
        except ValueError:
            raise ArgumentError(
                f"invalid {self.name} {text!r}: expected {self.kind.expectation}"
                + (" or *" if self.wildcard else "")) from None
        if self.zero_is_default and value == 0:
            return None
        return value

    def usage(self) -> str:
        """How this argument looks in a usage line, e.g. ``[<interleave:unsigned>]``."""
        text = f"<{self.name}:{self.kind.name}{'|*' if self.wildcard else ''}>"
        return f"[{text}]" if self.optional else text


@dataclass(frozen=True)
class ReplyValue:
    """One value of an ``ok`` reply; ``repeated`` means one per section."""

    name: str
    kind: Kind
    repeated: bool = False


@dataclass(frozen=True)
class Command:
    """A protocol command: wire name, backend method, arguments, reply."""

    name: str
    method: str | None
    arguments: tuple[Argument, ...] = ()
    reply: tuple[ReplyValue, ...] = ()
    since: str = "1.0"
    summary: str = ""
    changes_state: bool = False

    #: How many arguments a request must carry at least.
    required: int = field(init=False, repr=False, compare=False)
    # How each reply value is written, and whether the last one repeats.
    _formats: tuple[Callable[[Any], str], ...] = field(init=False, repr=False, compare=False)
    _repeated: bool = field(init=False, repr=False, compare=False)
    # The whole reply line in one % operation (see Kind), when it has a
    # fixed number of values: the template, the values' types it takes, and
    # the check of the line it gives.
    _template: str | None = field(init=False, repr=False, compare=False)
    _natives: tuple[type | None, ...] = field(init=False, repr=False, compare=False)
    _wire_line: Callable[[str], object] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived from the declaration once; the dataclass is frozen.
        derive = object.__setattr__
        derive(self, "required", sum(1 for argument in self.arguments if not argument.optional))
        derive(self, "_formats", tuple(value.kind.format for value in self.reply))
        derive(self, "_repeated", bool(self.reply) and self.reply[-1].repeated)
        kinds = [value.kind for value in self.reply]
        derive(self, "_natives", tuple(kind.native for kind in kinds))
        if not kinds or self._repeated or None in self._natives or not is_valid_name(self.name):
            derive(self, "_template", None)
            return
        head = f"{REPLY}{self.name}{SEPARATOR}{OK}"
        derive(self, "_template",
               head + "".join(SEPARATOR + kind.conversion for kind in kinds) + EOL)
        derive(self, "_wire_line", re.compile(
            re.escape(head) + "".join(f"{SEPARATOR}(?:{kind.wire})" for kind in kinds)
            + re.escape(EOL)).fullmatch)

    def parse_arguments(self, texts: Sequence[str]) -> list[Any]:
        """Check the count and kinds of a request's arguments; return values.

        Optional arguments left off are filled in with their default when
        they have one.  Raises :class:`ArgumentError` with the reason.
        """
        if not texts and not self.arguments:
            return []
        last = len(self.arguments) - 1
        if len(texts) > last + 1 and self.arguments and self.arguments[last].rest:
            texts = [*texts[:last], SEPARATOR.join(texts[last:])]
        if not texts and not self.required:
            values: list[Any] = []
        else:
            count = len(texts)
            if not self.required <= count <= len(self.arguments):
                raise ArgumentError(self._count_error(count))
            values = [argument.parse(text) for argument, text in zip(self.arguments, texts)]
        for argument in self.arguments[len(values):]:
            if argument.default is None:
                break
            values.append(argument.default)
        return values

    def _count_error(self, count: int) -> str:
        most = len(self.arguments)
        if most == 0:
            return f"{self.name} takes no arguments (got {count})"
        if self.required == most:
            return f"{self.name} needs {counted(most, 'argument')} (got {count})"
        return f"{self.name} takes {self.required} to {most} arguments (got {count})"

    def format_reply(self, result: Any) -> list[str]:
        """Turn a backend method's return value into the ``ok`` reply's values.

        ``None`` means no values; a list, tuple, 1-D numpy array, generator or
        any other iterable (but a ``str`` or ``bytes``) holds the values;
        anything else is one value.  Raises :class:`ReplyShapeError`, naming
        the field and what it takes, when the result does not fit.
        """
        values = self._values(result)
        formats: Sequence[Callable[[Any], str]] = self._formats
        if len(values) != len(formats):
            if not formats:
                return []  # the command has nothing to report: ignore what came
            formats = self._stretched(formats, len(values), result)
        try:
            return list(map(call, formats, values))
        except (ValueError, TypeError, ArithmeticError):
            raise ReplyShapeError(self._bad_value(values), result, self.method) from None

    def _values(self, result: Any) -> Sequence[Any]:
        """The values a backend method's ``result`` holds."""
        if isinstance(result, (tuple, list)):
            return result
        if result is None:
            return ()
        if isinstance(result, (str, bytes)) or not hasattr(result, "__iter__") \
                or getattr(result, "ndim", 1) == 0:
            return (result,)
        if getattr(result, "ndim", 1) != 1:
            raise ReplyShapeError(f"{self.name}: expected values in one dimension; got a "
                                  f"{result.ndim}-D array", result, self.method)
        return list(result)

    def _bad_value(self, values: Sequence[Any]) -> str:
        """Why one of ``values`` cannot be written: its field, what it takes, what came."""
        fields = self._stretched(self.reply, len(values))
        for field_, value in zip(fields, values):
            try:
                field_.kind.format(value)
            except (ValueError, TypeError, ArithmeticError):
                shown = repr(value)
                if len(shown) > _SHOWN_VALUE:
                    shown = shown[:_SHOWN_VALUE - 1] + "…"
                return f"{self.name} {field_.name}: expected {field_.kind.accepts}; got {shown}"
        return f"{self.name}: a value cannot be written"  # pragma: no cover - one failed above

    def reply_line(self, result: Any) -> bytes:
        """The wire bytes (CR LF included) of the ``ok`` reply carrying ``result``.

        That is ``ok_line(name, format_reply(result))``, written in one ``%``
        operation when every value has its kind's native type and the line
        needs no escape (the usual case: ``status`` with a float, a word and
        a bool).
        """
        if self._template is not None:
            values = result if result.__class__ is tuple else (result,)
            if tuple(map(type, values)) == self._natives:
                line = self._template % values
                if self._wire_line(line):
                    return line.encode(ENCODING, ENCODING_ERRORS)
        return ok_line(self.name, self.format_reply(result))

    def _stretched(self, items: Sequence[T], count: int, result: Any = None) -> Sequence[T]:
        """``items``, one per declared reply value, fitted to a reply of ``count`` values.

        The last item repeats when the last value does (one per section);
        raises :class:`ReplyShapeError` (with ``result``) when no fit exists.
        """
        fixed = len(items) - 1 if self._repeated else len(items)
        if count == len(items) or self._repeated and count >= fixed:
            return tuple(items[:fixed]) + tuple(items[fixed:]) * (count - fixed)
        raise ReplyShapeError(self._shape_error(count), result, self.method)

    def _shape_error(self, count: int) -> str:
        return (f"backend returned {counted(count, 'value')} for {self.name}: expected "
                + " ".join(value.name + ("..." if value.repeated else "")
                           for value in self.reply))

    def reply_values(self, count: int) -> Sequence[ReplyValue]:
        """The declared reply values fitted to an ``ok`` reply of ``count`` values.

        The last one repeats when it is one per section.  Raises
        :class:`ArgumentError` when no reply of ``count`` values fits.
        """
        try:
            return self._stretched(self.reply, count)
        except ReplyShapeError as error:
            raise ArgumentError(str(error).replace("backend returned", "reply has")) from None

    def parse_reply(self, texts: Sequence[str]) -> list[Any]:
        """Parse an ``ok`` reply's values (the client side of the same shape).

        Raises :class:`ArgumentError` when the reply does not fit.
        """
        values = self.reply_values(len(texts))
        try:
            return [value.kind.parse(text) for value, text in zip(values, texts)]
        except ValueError as error:
            raise ArgumentError(f"bad value in {self.name} reply: {error!s}") from None

    def usage(self) -> str:
        """How a request is typed, e.g. ``cal-on[,<interleave:unsigned>]``.

        Arguments are separated by commas as on the wire; optional ones are
        bracketed.
        """
        text, closing = self.name, ""
        for argument in self.arguments:
            usage = argument.usage()
            if argument.optional:
                text += "[," + usage[1:-1]
                closing += "]"
            else:
                text += "," + usage
        return text + closing

    def served_in(self, version: str | None, client_commands: bool = True) -> bool:
        """Whether a server speaking protocol ``version`` has this command.

        A command of a published version is there from its ``since`` on (a
        version this library does not know, or ``None``, has them all);
        ``client_commands`` says whether the real client's extra commands
        (``since`` :data:`CLIENT`) are there; extensions always are.
        """
        if self.since == CLIENT:
            return client_commands
        since, known = _version_key(self.since), _version_key(version)
        return since is None or known is None or since <= known


@functools.lru_cache(maxsize=64)
def _version_key(version: str | None) -> tuple[int, ...] | None:
    """``"1.3"`` as ``(1, 3)``, for comparing versions; ``None`` if it is not one."""
    parts = (version or "").split(".")
    if not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def check_protocol_version(version: str) -> str:
    """``version`` if it is one of :data:`PROTOCOL_VERSIONS`, else ``ValueError``."""
    if version not in PROTOCOL_VERSIONS:
        raise ValueError(f"unknown protocol version {version!r}: the versions are "
                         f"{', '.join(PROTOCOL_VERSIONS)}")
    return version


def _section_argument(name: str, kind: Kind) -> Argument:
    return Argument(name, kind, wildcard=True)


_TPI_ARGUMENTS = (
    Argument("frequency", FLOAT, optional=True, zero_is_default=True),
    Argument("bandwidth", FLOAT, optional=True, zero_is_default=True),
)
_PER_SECTION = (ReplyValue("value", FLOAT, repeated=True),)
_TIME_ARGUMENT = (Argument("timestamp", TIMESTAMP, optional=True),)

#: Every standard command, by wire name, in the order of the protocol's list.
COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("status", "status", (),
            (ReplyValue("timestamp", TIMESTAMP), ReplyValue("status", WORD),
             ReplyValue("acquiring", BOOLEAN)),
            summary="time, status word and acquiring flag"),
    Command(VERSION, None, (), (ReplyValue("version", TEXT),),
            summary="protocol version (answered by the library)"),
    Command("get-configuration", "get_configuration", (),
            (ReplyValue("configuration", TEXT),), summary="current configuration id"),
    Command("set-configuration", "set_configuration",
            (Argument("configuration", TEXT),), summary="load a configuration",
            changes_state=True),
    Command("get-integration", "get_integration", (),
            (ReplyValue("integration", INTEGER),), summary="integration time in ms"),
    Command("set-integration", "set_integration",
            (Argument("integration", NON_NEGATIVE_INTEGER),),
            summary="set the integration time in ms", changes_state=True),
    Command("get-tpi", "get_tpi", _TPI_ARGUMENTS, _PER_SECTION,
            summary="total power, one value per section"),
    Command("get-tp0", "get_tp0", _TPI_ARGUMENTS, _PER_SECTION,
            summary="zero-level total power, one value per section"),
    Command("get-rms", "get_rms", (), _PER_SECTION, since=CLIENT,
            summary="rms, one value per section"),
    Command("time", "time", (), (ReplyValue("timestamp", TIMESTAMP),),
            summary="the backend's clock"),
    Command("start", "start", _TIME_ARGUMENT,
            summary="start acquiring, now or at a time", changes_state=True),
    Command("stop", "stop", _TIME_ARGUMENT,
            summary="stop acquiring, now or at a time", changes_state=True),
    Command("set-section", "set_section", (
        _section_argument("section", INTEGER),
        _section_argument("start_freq", FLOAT),
        _section_argument("bandwidth", FLOAT),
        _section_argument("feed", INTEGER),
        _section_argument("mode", TEXT),
        _section_argument("sample_rate", FLOAT),
        _section_argument("bins", INTEGER),
    ), summary="configure a section (-1: all); * leaves a value unchanged",
        changes_state=True),
    Command("cal-on", "cal_on",
            (Argument("interleave", NON_NEGATIVE_INTEGER, optional=True, default=0),),
            summary="calibration mark every N samples (0: off)", changes_state=True),
    Command("set-filename", "set_filename", (Argument("filename", TEXT, rest=True),),
            since="1.1",
            summary="metadata file to merge", changes_state=True),
    Command("convert-data", "convert_data", since="1.2",
            summary="convert the acquired data", changes_state=True),
    Command("set-enable", "set_enable",
            (Argument("feed1", INTEGER), Argument("feed2", INTEGER)), since="1.3",
            summary="enable the given feeds", changes_state=True),
    Command("end-schedule", "end_schedule", since="1.4",
            summary="the schedule is over", changes_state=True),
    Command("backend-park", "park", since="1.4", summary="park the backend",
            changes_state=True),
    Command("set-shift", "set_shift", (Argument("shift", INTEGER),), since="1.4",
            summary="set the shift", changes_state=True),
)}

#: Extension commands every :class:`~discosbackend.handlers.DBProtocolHandler`
#: answers itself.  They are not part of the protocol: the real client never
#: sends them, and another server may answer them ``invalid``.
LIBRARY_COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command(HELP, None, (Argument("command", WORD, optional=True),),
            (ReplyValue("value", TEXT, repeated=True),), since="extension",
            summary="non-standard: the commands this server answers; with a name, "
                    "its usage and summary"),
)}

_DECLARATION = "__discos_command__"
F = TypeVar("F", bound=Callable[..., Any])


def command(name: str, *arguments: Argument, reply: Iterable[ReplyValue] | None = None,
            summary: str = "", changes_state: bool = True) -> Callable[[F], F]:
    """Declare a backend method as an extension command.

    ``@command("target-sweep", Argument("points", INTEGER))`` on a method
    makes ``?target-sweep,10`` call it with ``10``.  Without ``reply`` the
    method's return values are sent as text, one reply value each.
    """
    shape = tuple(reply) if reply is not None else (ReplyValue("value", TEXT, repeated=True),)

    def declare(method: F) -> F:
        setattr(method, _DECLARATION, Command(
            name, method.__name__, tuple(arguments), shape, since=EXTENSION,
            summary=summary or (method.__doc__ or "").strip().split("\n")[0],
            changes_state=changes_state))
        return method
    return declare


def commands_of(backend: object, version: str | None = None,
                client_commands: bool = True) -> dict[str, Command]:
    """The standard commands, the library's extensions (``help``) and those
    ``backend``'s class declares (which may replace the library's).

    With a protocol ``version``, only the commands a server of that version
    has (:meth:`Command.served_in`); raises ``ValueError`` for a version not in
    :data:`PROTOCOL_VERSIONS`.
    """
    if version is not None:
        check_protocol_version(version)
    table = {name: command for name, command in {**COMMANDS, **LIBRARY_COMMANDS}.items()
             if command.served_in(version, client_commands)}
    for attribute in dir(type(backend)):
        declaration = getattr(getattr(type(backend), attribute, None), _DECLARATION, None)
        if isinstance(declaration, Command):
            table[declaration.name] = declaration
    return table
