"""Transcripts: what a client and a server said to each other, as JSON lines.

The proxy writes one (``discos-backend proxy --record FILE``) and the replay
reads one.  Each line of the file is a JSON object: the time in unix
microseconds, the connection it belongs to (numbered from 1 as they open),
and either an event or a line sent (shown here over two lines each)::

    {"time_us": 1764432000123456, "connection": 1,
     "event": "open", "peer": "127.0.0.1:50412"}
    {"time_us": 1764432000123789, "connection": 1,
     "from": "server", "text": "!version,ok,1.4\\r\\n", "base64": "IXZlcnNpb24sb2ssMS40DQo="}
    {"time_us": 1764432000250001, "connection": 1,
     "from": "client", "text": "?status\\r\\n", "base64": "P3N0YXR1cw0K"}
    {"time_us": 1764432001000000, "connection": 1, "event": "close"}

``base64`` holds the line exactly as it went over the wire, terminator
included; ``text`` is the same for people and ``jq`` (bytes that are not
UTF-8 appear as ``\\xNN``).  A line is recorded once it is complete; a last
line cut short by the connection closing is recorded as it is.  Reading
goes by ``base64`` only.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

__all__ = ["CLIENT", "SERVER", "OPEN", "CLOSE", "Record", "TranscriptError", "TranscriptWriter",
           "read_transcript", "now_us"]

#: ``from`` of a line the client sent.
CLIENT = "client"
#: ``from`` of a line the server sent.
SERVER = "server"
#: ``event`` of a connection opening.
OPEN = "open"
#: ``event`` of a connection closing.
CLOSE = "close"


def now_us() -> int:
    """The time now in unix microseconds."""
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Record:
    """One line of a transcript: an event (``open``, ``close``) or a line sent.

    ``sender`` is :data:`CLIENT` or :data:`SERVER` for a line (``data`` is the
    line, terminator included) and ``""`` for an event.
    """

    time_us: int
    connection: int
    event: str = ""
    sender: str = ""
    data: bytes = b""
    peer: str = ""

    def to_json(self) -> str:
        """The record as one line of JSON (no newline)."""
        # Written by hand, not from a dict: the proxy writes one per line it
        # relays, and this is twice as fast.  Only the texts need escaping.
        head = f'{{"time_us": {int(self.time_us)}, "connection": {int(self.connection)}, '
        if self.sender:
            text = json.dumps(self.data.decode("utf-8", "backslashreplace"), ensure_ascii=False)
            data = base64.b64encode(self.data).decode("ascii")
            return head + f'"from": {json.dumps(self.sender)}, "text": {text}, "base64": "{data}"}}'
        peer = f', "peer": {json.dumps(self.peer, ensure_ascii=False)}' if self.peer else ""
        return head + f'"event": {json.dumps(self.event)}{peer}}}'


    @classmethod
    def from_json(cls, text: str) -> Record:
        """Read one record; raises ``ValueError`` (or ``KeyError``, ``TypeError``) if it is none."""
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        time_us, connection = fields["time_us"], fields["connection"]
        if not isinstance(time_us, int) or not isinstance(connection, int):
            raise ValueError("time_us and connection must be integers")
        sender = fields.get("from", "")
        if sender:
            if sender not in (CLIENT, SERVER):
                raise ValueError(f"'from' must be {CLIENT!r} or {SERVER!r}, not {sender!r}")
            data = base64.b64decode(fields["base64"], validate=True)
            return cls(time_us, connection, sender=sender, data=data)
        event = fields["event"]
        if event not in (OPEN, CLOSE):
            raise ValueError(f"'event' must be {OPEN!r} or {CLOSE!r}, not {event!r}")
        return cls(time_us, connection, event=event, peer=str(fields.get("peer", "")))


class TranscriptError(ValueError):
    """A transcript file that cannot be read; the message names the file and line."""


class TranscriptWriter:
    """Writes records to ``stream``, each flushed at once (a crash loses nothing written).

    ``clock`` gives the time in unix microseconds (:func:`now_us` by default).
    """

    def __init__(self, stream: IO[str], clock: Callable[[], int] = now_us) -> None:
        self._stream = stream
        self._clock = clock

    @classmethod
    def open(cls, path: str | Path) -> TranscriptWriter:
        """A writer to a new file at ``path`` (an existing one is replaced)."""
        return cls(open(path, "w", encoding="utf-8"))  # pylint: disable=consider-using-with

    def write(self, record: Record) -> None:
        """Write one record."""
        self._stream.write(record.to_json() + "\n")
        self._stream.flush()

    def opened(self, connection: int, peer: str = "") -> None:
        """Connection ``connection`` opened, from ``peer``."""
        self.write(Record(self._clock(), connection, event=OPEN, peer=peer))

    def line(self, connection: int, sender: str, data: bytes) -> None:
        """``sender`` sent the line ``data`` (terminator included) on ``connection``."""
        self.write(Record(self._clock(), connection, sender=sender, data=data))

    def closed(self, connection: int) -> None:
        """Connection ``connection`` closed."""
        self.write(Record(self._clock(), connection, event=CLOSE))

    def close(self) -> None:
        """Close the stream."""
        self._stream.close()


def _records(lines: Iterator[str], where: str) -> Iterator[Record]:
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            yield Record.from_json(text)
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            what = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            raise TranscriptError(f"{where} line {number}: not a transcript record "
                                  f"({what})") from None


def read_transcript(path: str | Path) -> list[Record]:
    """Every record of the transcript at ``path``, in order.

    Raises :class:`TranscriptError` for a file that cannot be read or a line
    that is not a record.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            return list(_records(stream, str(path)))
    except OSError as error:
        raise TranscriptError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise TranscriptError(f"{path}: not UTF-8 text ({error.reason})") from None
