"""Faults a simulated backend can be told to show, and the port that tells it.

:class:`Faults` holds what is wrong with the simulator right now: commands
that fail with a given reason, commands whose reply comes late, a status
word other than ``ok``, one garbled reply, one dropped connection.  The
simulator's handler (:class:`discosbackend.simulator.SimulatorHandler`)
consults it on every request.  Set faults from Python::

    simulator.faults.fail("start", "hardware-error")
    simulator.faults.delay("get-tpi", 2.5)

or, while serving, through the control endpoint that
:class:`ControlHandler` answers (same grammar as the public port)::

    ?fail,start,hardware-error    ?delay,get-tpi,2.5    ?status-word,clock-error
    ?garbage    ?disconnect    ?clear    ?faults

Faults never touch ``version`` unless named explicitly, so a new connection
always gets its greeting.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from discosbackend import __protocol_version__
from discosbackend.commands import (FLOAT, TEXT, VERSION, WORD, Argument, Command, ReplyValue,
                                    reason_text)
from discosbackend.errors import ArgumentError, InvalidRequest
from discosbackend.grammar import Message, is_valid_name, ok
from discosbackend.handlers import Handler

__all__ = ["Faults", "ControlHandler", "CONTROL_COMMANDS", "ALL_COMMANDS", "GARBAGE",
           "MAX_DELAY"]

#: Command name that makes :meth:`Faults.fail` and :meth:`Faults.delay` act on
#: every command (but ``version``).
ALL_COMMANDS = "*"
#: The longest delay that can be injected, in seconds.
MAX_DELAY = 86_400.0
#: What a garbled reply looks like on the wire: a line that does not parse.
GARBAGE = b"%garbage%\r\n"

_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class Faults:
    """The faults injected into one simulated backend.

    ``commands`` are the wire names a fault may name (the handler's command
    table); ``None`` accepts any well-formed name.  Every setter raises
    :class:`~discosbackend.errors.ArgumentError` (a ``ValueError``) on bad
    input.  ``fail`` and ``delay`` last until cleared; ``garbage_once`` and
    ``close_after_next`` act on the next request only.
    """

    def __init__(self, commands: Iterable[str] | None = None) -> None:
        self._commands = frozenset(commands) if commands is not None else None
        self.failures: dict[str, str] = {}
        self.delays: dict[str, float] = {}
        self.status: str | None = None
        self.garbage = False
        self.disconnect = False

    # -- setting --------------------------------------------------------

    def _command(self, command: str) -> str:
        if command == ALL_COMMANDS:
            return command
        if self._commands is None:
            known = isinstance(command, str) and is_valid_name(command)
        else:
            known = command in self._commands
        if not known:
            raise ArgumentError(f"unknown command {command!r}")
        return command

    def fail(self, command: str, reason: str = "hardware-error") -> None:
        """Make ``command`` (a wire name, or ``*`` for all) fail with ``reason``."""
        name = self._command(command)
        text = reason_text(reason)
        if not text:
            raise ArgumentError("empty reason")
        self.failures[name] = text

    def delay(self, command: str, seconds: float) -> None:
        """Delay the replies to ``command`` (or ``*``) by ``seconds``; 0 removes it."""
        name = self._command(command)
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            raise ArgumentError(f"invalid delay {seconds!r}") from None
        if not 0.0 <= value <= MAX_DELAY:  # also refuses nan
            raise ArgumentError(f"delay {seconds!r} out of range 0..{MAX_DELAY:g} s")
        if value == 0.0:
            self.delays.pop(name, None)
        else:
            self.delays[name] = value

    def status_word(self, word: str | None) -> None:
        """Report ``word`` as the status code (e.g. ``clock-error``); ``ok`` or ``None`` clears."""
        if word is None or word == "ok":
            self.status = None
            return
        if not isinstance(word, str) or not _WORD_RE.fullmatch(word):
            raise ArgumentError(
                f"invalid status word {word!r}: use letters digits and . _ -")
        self.status = word

    def garbage_once(self) -> None:
        """Answer the next request with a line that does not parse."""
        self.garbage = True

    def close_after_next(self) -> None:
        """Answer the next request, then close its connection."""
        self.disconnect = True

    def clear(self) -> None:
        """Remove every fault."""
        self.failures.clear()
        self.delays.clear()
        self.status = None
        self.garbage = self.disconnect = False

    def active(self) -> list[str]:
        """The active faults, one short text each (``fail:start:hardware-error``...)."""
        found = [f"fail:{name}:{reason}" for name, reason in sorted(self.failures.items())]
        found += [f"delay:{name}:{seconds:g}" for name, seconds in sorted(self.delays.items())]
        if self.status is not None:
            found.append(f"status-word:{self.status}")
        if self.garbage:
            found.append("garbage")
        if self.disconnect:
            found.append("disconnect")
        return found

    # -- consulting -----------------------------------------------------

    def failure_for(self, command: str) -> str | None:
        """The reason ``command`` must fail with, or ``None``."""
        reason = self.failures.get(command)
        if reason is None and command != VERSION:
            reason = self.failures.get(ALL_COMMANDS)
        return reason

    def delay_for(self, command: str) -> float:
        """How many seconds the reply to ``command`` must wait (0: none)."""
        seconds = self.delays.get(command)
        if seconds is None and command != VERSION:
            seconds = self.delays.get(ALL_COMMANDS)
        return seconds or 0.0

    def take_garbage(self, command: str) -> bool:
        """Whether the reply to ``command`` must be garbage (consumes the fault)."""
        if not self.garbage or command == VERSION:
            return False
        self.garbage = False
        return True

    def take_disconnect(self, command: str) -> bool:
        """Whether to close after replying to ``command`` (consumes the fault)."""
        if not self.disconnect or command == VERSION:
            return False
        self.disconnect = False
        return True

    def __repr__(self) -> str:
        return f"Faults({', '.join(self.active()) or 'none'})"


def _control(name: str, method: str, *arguments: Argument, summary: str,
             reply: tuple[ReplyValue, ...] = ()) -> Command:
    return Command(name, method, arguments, reply, since="control", summary=summary)


#: The commands of the control endpoint, by wire name.
CONTROL_COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command(VERSION, None, (), (ReplyValue("version", TEXT),),
            summary="protocol version"),
    _control("fail", "fail", Argument("command", WORD), Argument("reason", TEXT),
             summary="make a command (or *) fail with a reason"),
    _control("delay", "delay", Argument("command", WORD), Argument("seconds", FLOAT),
             summary="delay the replies to a command (or *); 0 removes the delay"),
    _control("status-word", "status_word", Argument("word", WORD),
             summary="report this status word (ok: healthy again)"),
    _control("garbage", "garbage_once", summary="answer the next request with garbage"),
    _control("disconnect", "close_after_next",
             summary="close the connection after the next request"),
    _control("clear", "clear", summary="remove every fault"),
    _control("faults", "active", reply=(ReplyValue("fault", TEXT, repeated=True),),
             summary="list the active faults"),
)}


class ControlHandler(Handler):
    """Answers the control endpoint's requests by setting ``faults``.

    Unknown commands are ``invalid``; bad arguments are ``fail``.
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.commands = CONTROL_COMMANDS

    def handle(self, message: Message) -> Message:
        command = self.commands.get(message.name)
        if command is None:
            raise InvalidRequest(f"unknown command {message.name!r}: use one of "
                                 + " ".join(sorted(self.commands)))
        values = command.parse_arguments(message.arguments)
        if command.method is None:
            return ok(command.name, __protocol_version__)
        result: Any = getattr(self.faults, command.method)(*values)
        return ok(command.name, *command.format_reply(result))
