"""Transcripts: JSON lines that keep every byte, readable by people and by the replay."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import given, strategies as st

from discosbackend.transcript import (CLIENT, CLOSE, OPEN, SERVER, Record, TranscriptError,
                                      TranscriptWriter, now_us, read_transcript)


def ticking(start: int = 1_764_432_000_000_000) -> Callable[[], int]:
    times = iter(range(start, start + 10_000, 7))
    return lambda: next(times)


def test_the_writer_writes_one_json_object_per_line_flushed_at_once() -> None:
    stream = io.StringIO()
    writer = TranscriptWriter(stream, clock=ticking())
    writer.opened(1, "127.0.0.1:50412")
    assert stream.getvalue().count("\n") == 1  # written before the next record
    writer.line(1, SERVER, b"!version,ok,1.4\r\n")
    writer.line(1, CLIENT, b"?set-filename,/d/\xe8,b.fits\n")
    writer.closed(1)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {"time_us": 1764432000000000, "connection": 1, "event": "open",
         "peer": "127.0.0.1:50412"},
        {"time_us": 1764432000000007, "connection": 1, "from": "server",
         "text": "!version,ok,1.4\r\n", "base64": "IXZlcnNpb24sb2ssMS40DQo="},
        {"time_us": 1764432000000014, "connection": 1, "from": "client",
         "text": "?set-filename,/d/\\xe8,b.fits\n", "base64": "P3NldC1maWxlbmFtZSwvZC/oLGIuZml0cwo="},
        {"time_us": 1764432000000021, "connection": 1, "event": "close"},
    ]


@given(st.binary(max_size=200), st.sampled_from([CLIENT, SERVER]),
       st.integers(min_value=1, max_value=10**6))
def test_every_byte_survives_a_round_trip(data: bytes, sender: str, connection: int) -> None:
    record = Record(now_us(), connection, sender=sender, data=data)
    assert Record.from_json(record.to_json()) == record


def test_a_file_reads_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    writer = TranscriptWriter.open(path)
    writer.opened(2)
    writer.line(2, CLIENT, b"?status\r\n")
    writer.closed(2)
    writer.close()
    path.write_text(path.read_text() + "\n")  # blank lines are ignored
    records = read_transcript(path)
    assert [(record.connection, record.event, record.sender, record.data)
            for record in records] == [(2, OPEN, "", b""), (2, "", CLIENT, b"?status\r\n"),
                                       (2, CLOSE, "", b"")]
    assert records[0].time_us <= records[1].time_us <= records[2].time_us


@pytest.mark.parametrize("line, reason", [
    ("not json", "Expecting value"),
    ("[1, 2]", "not a JSON object"),
    ('{"connection": 1, "event": "open"}', "missing field 'time_us'"),
    ('{"time_us": "now", "connection": 1, "event": "open"}', "must be integers"),
    ('{"time_us": 1, "connection": 1, "from": "nobody", "base64": ""}', "'from' must be"),
    ('{"time_us": 1, "connection": 1, "from": "client", "base64": "***"}', "base64"),
    ('{"time_us": 1, "connection": 1, "event": "boom"}', "'event' must be"),
])
def test_a_line_that_is_no_record_is_refused_with_its_number(tmp_path: Path, line: str,
                                                             reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"time_us": 1, "connection": 1, "event": "open"}\n' + line + "\n")
    with pytest.raises(TranscriptError, match=f"bad.jsonl line 2: not a transcript record "
                                              f"\\(.*{reason}"):
        read_transcript(path)


def test_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="cannot read .*missing.jsonl: No such file"):
        read_transcript(tmp_path / "missing.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(TranscriptError, match="not UTF-8 text"):
        read_transcript(binary)
