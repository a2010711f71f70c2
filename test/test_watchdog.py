"""Tests for discosbackend.watchdog: a warning when answering blocks the reactor.

Time is a fake clock the backend advances itself, as a blocking call would
let real time pass: no test sleeps.
"""

from __future__ import annotations

import math

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel

from discosbackend.backend import Backend
from discosbackend.handlers import AlwaysOkHandler, DBProtocolHandler, Handler
from discosbackend.protocol import DBProtocolFactory
from discosbackend.watchdog import DEFAULT_THRESHOLD, Watchdog

ADVICE = ("meanwhile no other connection, time-tagged start/stop or signal was served. Run "
          "blocking backend code in the worker thread: mark the method with "
          "@discosbackend.backend.blocking, serve with DBProtocolHandler(backend, "
          "threaded=True) or discos-backend serve --threaded")


class FakeTimer:
    """Seconds that pass only when a backend method says so."""

    def __init__(self) -> None:
        self.now = 100.0
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return self.now


class BlockingBackend(Backend):
    """``get_tpi`` takes 1.5 s of the fake timer, ``get_rms`` 0.1 s, ``status`` none."""

    def __init__(self, timer: FakeTimer) -> None:
        super().__init__(task.Clock())
        self.timer = timer

    def get_tpi(self, frequency=None, bandwidth=None):
        self.timer.now += 1.5
        return [1.0, 2.0]

    def get_rms(self):
        self.timer.now += 0.1
        return [3.0]


def connect(handler: Handler, timer: FakeTimer, **options):
    factory = DBProtocolFactory(handler, clock=task.Clock(), timer=timer, **options)
    factory.startFactory()
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


@pytest.fixture(name="timer")
def fixture_timer() -> FakeTimer:
    return FakeTimer()


def test_a_call_blocking_longer_than_the_threshold_is_named_with_its_time(timer, logged):
    protocol, transport = connect(DBProtocolHandler(BlockingBackend(timer)), timer)
    protocol.dataReceived(b"?get-tpi,0,0\r\n")
    assert transport.value().endswith(b"!get-tpi,ok,1.0,2.0\r\n")
    assert logged.texts(LogLevel.warn) == [
        "the reactor was blocked 1.500 s answering ?get-tpi,0,0 (backend method get_tpi()): "
        + ADVICE]


def test_quick_calls_log_nothing_at_all(timer, logged):
    protocol, transport = connect(DBProtocolHandler(BlockingBackend(timer)), timer)
    del logged[:]  # the connection's own line
    for _ in range(50):
        protocol.dataReceived(b"?get-rms\r\n?status\r\n")
    assert transport.value().count(b"\r\n") == 101
    assert logged == []  # not even at debug
    assert timer.readings == 100  # two per packet, none per request


def test_several_requests_in_one_packet_are_named_together(timer, logged):
    protocol, _ = connect(DBProtocolHandler(BlockingBackend(timer)), timer)
    protocol.dataReceived(b"?status\r\n?get-tpi\r\n?get-rms\r\n?get-tpi,0,0\r\n")
    assert logged.texts(LogLevel.warn) == [
        "the reactor was blocked 3.100 s answering 4 requests (?status first) (backend method "
        "get_rms(), get_tpi(), status()): " + ADVICE]


def test_the_threshold_is_configurable_and_none_disables_it(timer, logged):
    protocol, _ = connect(DBProtocolHandler(BlockingBackend(timer)), timer, watchdog=0.05)
    protocol.dataReceived(b"?get-rms\r\n")
    assert len(logged.texts(LogLevel.warn)) == 1
    readings = timer.readings
    protocol, _ = connect(DBProtocolHandler(BlockingBackend(timer)), timer, watchdog=None)
    protocol.dataReceived(b"?get-tpi\r\n")
    assert len(logged.texts(LogLevel.warn)) == 1
    assert timer.readings == readings  # no watchdog, no clock readings


def test_a_handler_without_commands_is_named_by_the_request_alone(timer, logged):
    watchdog = Watchdog(AlwaysOkHandler(), timer=timer)
    watchdog.check(timer.now - 0.25, [b"?anything,1"])
    watchdog.check(timer.now - 0.25, [b"junk " * 30])
    watchdog.check(timer.now - 0.25, [])
    assert [text.split(": meanwhile")[0] for text in logged.texts(LogLevel.warn)] == [
        "the reactor was blocked 0.250 s answering ?anything,1",
        "the reactor was blocked 0.250 s answering " + ("junk " * 12) + "…",
        "the reactor was blocked 0.250 s answering a packet"]


def test_default_threshold_and_bad_thresholds():
    assert Watchdog(None).threshold == DEFAULT_THRESHOLD == 0.2
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match="threshold must be positive"):
            Watchdog(None, bad)
