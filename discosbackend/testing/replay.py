"""Replay a recorded session against a server and compare the replies.

A transcript (:mod:`discosbackend.transcript`, as ``discos-backend proxy
--record`` writes it) is played again in the order it was recorded: one
connection per recorded connection, each client line sent exactly as it
was, and each server line awaited where it came.  So requests that were
pipelined are pipelined again, and a request waits for the replies that
came before it.  With ``timing`` the recorded gaps before each client line
are kept; by default lines go as fast as the replies come.

Each reply is compared with the recorded one by the command table's
shapes (:func:`compare_replies`): the name and the code must match; of an
``ok`` reply, the number of values, and each value by its kind.  Timestamps
and measured floats (``get-tpi``...) only need to be valid values of their
kind; configuration ids, counts, words, flags and texts must be equal.
Reasons of ``fail`` and ``invalid`` replies are not compared (they may hold
times).  With ``exact`` every line must be the same, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from twisted.internet import defer, task

from discosbackend.commands import COMMANDS, FLOAT, TIMESTAMP
from discosbackend.conformance import (Conversation, framing_problem, ok_values_problem,
                                       parse_raw, show)
from discosbackend.grammar import OK, Message
from discosbackend.reactor import or_global
from discosbackend.testing.runner import Where
from discosbackend.testing.session import CheckFailed, Session, Settings, connect
from discosbackend.transcript import CLIENT, CLOSE, SERVER, Record, read_transcript

__all__ = ["MEASURED", "Difference", "ConnectionResult", "Report", "compare_replies",
           "replay", "replay_file"]

#: The kinds whose values are measurements: compared by kind, not by value.
MEASURED = (FLOAT, TIMESTAMP)


def compare_replies(recorded: bytes, received: bytes, exact: bool = False) -> str | None:
    """How ``received`` differs from the ``recorded`` reply, or ``None`` if it matches."""
    if exact:
        return None if received == recorded else "not the same bytes"
    framing = framing_problem(received)
    if framing != framing_problem(recorded):
        return f"line end: {framing or 'CR LF'}"
    old, new = parse_raw(recorded), parse_raw(received)
    if old is None or new is None:
        return None if received == recorded else (
            "it does not parse" if new is None else "the recorded line does not parse")
    if (new.message_type, new.name, new.code) != (old.message_type, old.name, old.code):
        return (f"{'name and code' if new.name != old.name else 'code'}: recorded "
                f"{old.message_type}{old.name},{old.code}, received "
                f"{new.message_type}{new.name},{new.code}")
    if new.code != OK:
        return None  # reasons are not compared
    return _compare_values(old, new)


def _compare_values(old: Message, new: Message) -> str | None:
    """How the values of the ``ok`` reply ``new`` differ from the recorded ``old``."""
    before, after = old.arguments, new.arguments
    if len(after) != len(before):
        return f"{len(after)} values, recorded {len(before)}"
    command = COMMANDS.get(new.name)
    if command is None or ok_values_problem(command, before) is not None:
        # A backend's own command, or a recording that breaks the table
        # itself: the values can only be compared as text.
        return None if after == before else f"values {after}, recorded {before}"
    problem = ok_values_problem(command, after)
    if problem is not None:
        return problem
    for value, then, now in zip(command.reply_values(len(after)), before, after):
        if value.kind not in MEASURED and value.kind.parse(then) != value.kind.parse(now):
            return f"{value.name} {now!r}, recorded {then!r}"
    return None


@dataclass(frozen=True)
class Difference:
    """One reply that does not match its recording.

    ``received`` is ``None`` when no reply came (``nothing`` says why);
    ``request`` is ``None`` for the greeting.
    """

    connection: int
    request: bytes | None
    recorded: bytes
    received: bytes | None
    why: str

    def __str__(self) -> str:
        what = "the greeting" if self.request is None else f"reply to {show(self.request)}"
        received = show(self.received) if self.received is not None else "(nothing)"
        return (f"{what}\n    recorded: {show(self.recorded)}\n    received: {received}\n"
                f"    differs:  {self.why}")


def _replies(count: int) -> str:
    return f"{count} repl{'y' if count == 1 else 'ies'}"


@dataclass
class ConnectionResult:
    """How one recorded connection replayed: replies compared and differences."""

    connection: int
    compared: int = 0
    differences: list[Difference] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def matches(self) -> bool:
        """Whether every reply matched."""
        return not self.differences

    def describe(self, marks: tuple[str, str] = ("✓", "✗")) -> str:
        """One line, then each difference indented."""
        if self.matches:
            return (f"{marks[0]} connection {self.connection}: {_replies(self.compared)} "
                    f"match{'es' if self.compared == 1 else ''}")
        count = len(self.differences)
        lines = [f"{marks[1]} connection {self.connection}: {count} of "
                 f"{_replies(self.compared)} differ{'s' if count == 1 else ''}"]
        lines.extend("    " + str(difference).replace("\n", "\n    ")
                     for difference in self.differences)
        return "\n".join(lines)


@dataclass
class Report:
    """Every connection's :class:`ConnectionResult`, in the order they opened."""

    connections: list[ConnectionResult]

    @property
    def matches(self) -> bool:
        """Whether every reply of every connection matched."""
        return all(result.matches for result in self.connections)

    @property
    def compared(self) -> int:
        """How many replies were compared."""
        return sum(result.compared for result in self.connections)

    @property
    def differences(self) -> list[Difference]:
        """Every difference, connection by connection."""
        return [difference for result in self.connections for difference in result.differences]

    def summary(self) -> str:
        """``N of M replies match, K differ``."""
        count = len(self.differences)
        return (f"{self.compared - count} of {_replies(self.compared)} match, {count} "
                f"differ{'s' if count == 1 else ''}")

    def text(self) -> str:
        """Every connection's lines and the summary."""
        return "\n".join([result.describe() for result in self.connections] + [self.summary()])


class _Replayed:
    """One recorded connection being replayed."""

    def __init__(self, number: int, session: Session, started: float) -> None:
        self.session = session
        self.recorded = Conversation()  # pairs the recorded replies with their requests
        self.result = ConnectionResult(number)
        self.started = started
        self.closed = False


async def _replay(records: Sequence[Record], where: Where, timing: bool, exact: bool,
                  settings: Settings, reactor: Any,
                  progress: Callable[[ConnectionResult], object] | None) -> Report:
    replayed: dict[int, _Replayed] = {}
    start = records[0].time_us if records else 0
    began = reactor.seconds()

    async def finish(connection: _Replayed) -> None:
        if connection.closed:
            return
        connection.closed = True
        await connection.session.close()
        connection.result.seconds = reactor.seconds() - connection.started
        if progress is not None:
            progress(connection.result)

    for record in records:
        connection = replayed.get(record.connection)
        if connection is None:
            session = await connect(where, settings=settings, reactor=reactor)
            session.within_server_version = False  # send what was recorded, whatever it is
            connection = replayed[record.connection] = _Replayed(
                record.connection, session, reactor.seconds())
        if record.event == CLOSE:
            await finish(connection)
        elif record.sender == CLIENT and not connection.closed:
            if timing:
                due = began + (record.time_us - start) / 1e6 - reactor.seconds()
                if due > 0:
                    await task.deferLater(reactor, due, lambda: None)
            connection.recorded.request(record.data)
            connection.session.write(record.data)
        elif record.sender == SERVER and not connection.closed:
            await _compare_next(connection, record.data, exact)
    for connection in replayed.values():
        await finish(connection)
    return Report([connection.result for connection in replayed.values()])


async def _compare_next(connection: _Replayed, recorded: bytes, exact: bool) -> None:
    """Await the server's next line and compare it with ``recorded``."""
    greeting = connection.recorded.greeting is None
    request, _ = connection.recorded.reply(recorded)
    if greeting and connection.recorded.greeting is not None:
        received, nothing = connection.session.greeting, "no greeting"
    else:
        try:
            received, nothing = await connection.session.receive(request or b""), ""
        except CheckFailed as error:
            received, nothing = None, error.received
    result = connection.result
    result.compared += 1
    why = nothing if received is None else compare_replies(recorded, received, exact)
    if why is not None:
        result.differences.append(Difference(result.connection, request, recorded, received,
                                             why))


def replay(records: Sequence[Record], where: Where, *, timing: bool = False,
           exact: bool = False, settings: Settings | None = None, reactor: Any = None,
           progress: Callable[[ConnectionResult], object] | None = None,
           ) -> defer.Deferred[Report]:
    """Replay ``records`` against the server at ``where``; fires with the :class:`Report`.

    ``settings.timeout`` bounds each wait for a reply (and the greeting);
    ``progress`` is called with each connection's result once it is
    replayed.  Fails with :class:`~discosbackend.testing.session.CannotConnect`
    if the server cannot be reached.
    """
    reactor = or_global(reactor)
    if settings is None:
        settings = Settings()
    return defer.Deferred.fromCoroutine(
        _replay(records, where, timing, exact, settings, reactor, progress))


def replay_file(path: str | Path, where: Where, **options: Any) -> defer.Deferred[Report]:
    """:func:`replay` the transcript at ``path``; raises ``TranscriptError`` if it is unreadable."""
    return replay(read_transcript(path), where, **options)
