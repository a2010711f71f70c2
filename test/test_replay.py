"""Replaying a transcript: replies compared by the command table's shapes, on real sockets."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from discosbackend import server
from discosbackend.handlers import DBProtocolHandler, Handler
from discosbackend.grammar import Message
from discosbackend.responder import RawReply
from discosbackend.simulator import BackendSimulator, SimulatorHandler
from discosbackend.testing import CannotConnect, Settings
from discosbackend.testing.replay import Difference, compare_replies, replay
from discosbackend.transcript import CLIENT, CLOSE, OPEN, SERVER, Record

from broken_backends import listen_raw, no_greeting_factory, stop_raw
from serving import closed_port

STATUS = b"!status,ok,1430922782.9708830,ok,0\r\n"


# --------------------------------------------------------------------------
# One reply against its recording
# --------------------------------------------------------------------------

def test_timestamps_are_compared_by_kind_only() -> None:
    assert compare_replies(STATUS, STATUS) is None
    assert compare_replies(STATUS, b"!status,ok,1795216801.1877356,ok,0\r\n") is None


@pytest.mark.parametrize("recorded, received, why", [
    (STATUS, b"!status,ok,1430922782.97,ok,0\r\n",
     "timestamp: unix seconds with exactly 7 decimals, not '1430922782.97'"),
    (STATUS, b"!status,ok,1430922782.9708830,clock-error,0\r\n",
     "status 'clock-error', recorded 'ok'"),
    (STATUS, b"!status,ok,1430922782.9708830,ok,1\r\n", "acquiring '1', recorded '0'"),
    (STATUS, b"!status,ok,1430922782.9708830,ok\r\n", "2 values, recorded 3"),
    (STATUS, b"!status,ok,1430922782.9708830,ok,0\n", "line end: ends in a bare LF"),
    (STATUS, b"!status,fail,busy\r\n",
     "code: recorded !status,ok, received !status,fail"),
    (STATUS, b"!time,ok,1430922782.9708830\r\n",
     "name and code: recorded !status,ok, received !time,ok"),
    (STATUS, b"status\r\n", "it does not parse"),
    (b"!get-tpi,ok,903.21,1240.57\r\n", b"!get-tpi,ok,903.21\r\n", "1 values, recorded 2"),
    (b"!get-tpi,ok,903.21,1240.57\r\n", b"!get-tpi,ok,903.21,inf\r\n",
     "value: a finite number, not 'inf'"),
    (b"!get-configuration,ok,SK00\r\n", b"!get-configuration,ok,SK77\r\n",
     "configuration 'SK77', recorded 'SK00'"),
    (b"!get-integration,ok,40\r\n", b"!get-integration,ok,41\r\n",
     "integration '41', recorded '40'"),
    (b"!version,ok,1.4\r\n", b"!version,ok,1.2\r\n", "version '1.2', recorded '1.4'"),
    (b"!target-sweep,ok,20\r\n", b"!target-sweep,ok,21\r\n",
     "values ['21'], recorded ['20']"),
    (b"garbage\r\n", STATUS, "the recorded line does not parse"),
    (b"garbage\r\n", b"other garbage\r\n", "it does not parse"),
    (b"!get-integration,ok,x\r\n", b"!get-integration,ok,y\r\n",
     "values ['y'], recorded ['x']"),
])
def test_each_difference_is_named(recorded: bytes, received: bytes, why: str) -> None:
    assert why in compare_replies(recorded, received)


def test_what_is_not_compared() -> None:
    assert compare_replies(b"!get-tpi,ok,903.21,1240.57\r\n", b"!get-tpi,ok,1,2.5e3\r\n") is None
    assert compare_replies(b"!start,fail,past timestamp 1.5\r\n",
                           b"!start,fail,past timestamp 2.5\r\n") is None  # reasons
    assert compare_replies(b"!get-integration,ok,040\r\n", b"!get-integration,ok,40\r\n") is None
    assert compare_replies(b"!get-integration,ok,x\r\n", b"!get-integration,ok,x\r\n") is None
    assert compare_replies(b"garbage\r\n", b"garbage\r\n") is None
    assert compare_replies(b"!target-sweep,ok,20\r\n", b"!target-sweep,ok,20\r\n") is None


def test_exact_compares_every_byte() -> None:
    assert compare_replies(STATUS, STATUS, exact=True) is None
    assert compare_replies(STATUS, b"!status,ok,1795216801.1877356,ok,0\r\n",
                           exact=True) == "not the same bytes"


def test_a_difference_reads_recorded_received_differs() -> None:
    difference = Difference(1, b"?status\r\n", STATUS, None, "nothing within 5 s")
    assert str(difference) == ("reply to ?status\n    recorded: !status,ok,1430922782.9708830,ok,0"
                               "\n    received: (nothing)\n    differs:  nothing within 5 s")


# --------------------------------------------------------------------------
# Whole replays on loopback
# --------------------------------------------------------------------------

def session(*lines: tuple[int, str, bytes], gap_us: int = 1000) -> list[Record]:
    """Records of ``(connection, from, line)``, ``gap_us`` apart; events for "open"/"close"."""
    records = []
    for number, (connection, kind, data) in enumerate(lines):
        time_us = 1_764_432_000_000_000 + number * gap_us
        if kind in (OPEN, CLOSE):
            records.append(Record(time_us, connection, event=kind))
        else:
            records.append(Record(time_us, connection, sender=kind, data=data))
    return records


class Silent(Handler):
    """Never answers ``?silent``; answers everything else ``ok``."""

    def handle(self, message: Message) -> Any:
        if message.name == "silent":
            return defer.Deferred()
        if message.name == "version":
            return RawReply(b"!version,ok,1.4\r\n")
        return RawReply(b"!" + message.name.encode() + b",ok\r\n")


@pytest_twisted.inlineCallbacks
def serve(handler: Handler | None = None) -> Any:
    port = yield server.listen(0, handler or SimulatorHandler(BackendSimulator()),
                               interface="127.0.0.1")
    return port


def where(port: Any) -> tuple[str, int]:
    return ("127.0.0.1", port.getHost().port)


@pytest_twisted.inlineCallbacks
def test_pipelined_requests_are_sent_before_their_replies_as_recorded() -> None:
    port = yield serve()
    records = session((1, OPEN, b""), (1, SERVER, b"!version,ok,1.4\r\n"),
                      (1, CLIENT, b"?set-integration,40\r\n"), (1, CLIENT, b"?get-integration\n"),
                      (1, SERVER, b"!set-integration,ok\r\n"),
                      (1, SERVER, b"!get-integration,ok,40\r\n"),
                      (2, SERVER, b"!version,ok,1.4\r\n"),  # no open event: opened when seen
                      (2, CLIENT, b"?get-integration\r\n"),
                      (2, SERVER, b"!get-integration,ok,40\r\n"),
                      (1, CLOSE, b""))
    seen: list[Any] = []
    try:
        report = yield replay(records, where(port), progress=seen.append)
    finally:
        yield server.stop(port)
    assert report.matches and report.compared == 5
    assert [result.connection for result in report.connections] == [1, 2]
    assert sorted(result.connection for result in seen) == [1, 2]
    assert report.text() == ("✓ connection 1: 3 replies match\n✓ connection 2: 2 replies match\n"
                             "5 of 5 replies match, 0 differ")


@pytest_twisted.inlineCallbacks
def test_a_reply_that_never_comes_and_a_missing_greeting_are_differences() -> None:
    port = yield serve(Silent())
    records = session((1, SERVER, b"!version,ok,1.4\r\n"), (1, CLIENT, b"?silent\r\n"),
                      (1, SERVER, b"!silent,ok\r\n"), (1, CLIENT, b"?after\r\n"),
                      (1, CLIENT, b"?cut"))  # a last line the server never answered
    try:
        report = yield replay(records, where(port),
                              settings=Settings(timeout=0.2, greeting_timeout=0.2))
    finally:
        yield server.stop(port)
    assert [(difference.request, difference.received, difference.why)
            for difference in report.differences] == [
        (b"?silent\r\n", None, "nothing within 0.2 s")]
    assert report.summary() == "1 of 2 replies match, 1 differs"
    assert "1 of 2 replies differs" in report.connections[0].describe()

    raw = listen_raw(no_greeting_factory())
    try:
        report = yield replay(session((1, SERVER, b"!version,ok,1.4\r\n")), where(raw),
                              settings=Settings(greeting_timeout=0.05))
    finally:
        yield stop_raw(raw)
    assert [difference.why for difference in report.differences] == ["no greeting"]
    assert str(report.differences[0]).startswith("the greeting\n")


@pytest_twisted.inlineCallbacks
def test_with_timing_each_request_waits_for_its_recorded_moment() -> None:
    port = yield serve()
    records = session((1, SERVER, b"!version,ok,1.4\r\n"), (1, CLIENT, b"?time\r\n"),
                      (1, SERVER, b"!time,ok,1430922782.9708830\r\n"),
                      (1, CLIENT, b"?time\r\n"), (1, SERVER, b"!time,ok,1430922782.9708830\r\n"),
                      gap_us=50_000)
    try:
        began = reactor.seconds()
        report = yield replay(records, where(port), timing=True)
        took = reactor.seconds() - began
    finally:
        yield server.stop(port)
    assert report.matches
    assert took >= 0.15  # the last request is recorded 0.15 s after the first record


@pytest_twisted.inlineCallbacks
def test_an_unreachable_server_is_cannot_connect() -> None:
    with pytest.raises(CannotConnect):
        yield replay(session((1, OPEN, b"")), ("127.0.0.1", closed_port()))


@pytest_twisted.inlineCallbacks
def test_an_empty_transcript_replays_nothing() -> None:
    report = yield replay([], ("127.0.0.1", closed_port()))
    assert report.matches and report.compared == 0 and report.summary().startswith("0 of 0")


@pytest_twisted.inlineCallbacks
def test_a_recorded_session_of_a_newer_protocol_differs_against_an_older_server() -> None:
    port = yield serve(DBProtocolHandler(BackendSimulator(), protocol="1.3"))
    records = session((1, SERVER, b"!version,ok,1.4\r\n"), (1, CLIENT, b"?set-shift,3\r\n"),
                      (1, SERVER, b"!set-shift,ok\r\n"))
    try:
        report = yield replay(records, where(port))
    finally:
        yield server.stop(port)
    assert [difference.why for difference in report.differences] == [
        "version '1.3', recorded '1.4'", "code: recorded !set-shift,ok, received !set-shift,invalid"]
