"""discosbackend.logs: the text and JSON-lines observers, levels and filters."""

from __future__ import annotations

import io
import json
import sys
import warnings

import pytest
from twisted.logger import LogBeginner, LogLevel, LogPublisher, Logger, PredicateResult
from twisted.python.failure import Failure

from discosbackend import logs

EXCHANGE = {"log_format": logs.EXCHANGE_FORMAT, "log_level": LogLevel.debug,
            "log_namespace": "discosbackend.responder", "log_time": 1_700_000_000.25,
            "peer": "127.0.0.1:4000", "request": "?get-tpi,0,0",
            "reply": "!get-tpi,ok,1.0,2.0", "duration_ms": 1.23456}


def test_an_exchange_reads_as_one_line_of_text() -> None:
    stream = io.StringIO()
    logs.observer(stream, verbose=True)(dict(EXCHANGE))
    assert stream.getvalue().endswith(
        "[discosbackend.responder#debug] 127.0.0.1:4000 ?get-tpi,0,0 -> "
        "!get-tpi,ok,1.0,2.0 (1.235 ms)\n")


def test_an_exchange_as_json_has_its_fields() -> None:
    stream = io.StringIO()
    logs.observer(stream, verbose=True, log_format=logs.JSON)(dict(EXCHANGE))
    record = json.loads(stream.getvalue())
    assert record == {
        "time": "2023-11-14T22:13:20.250Z", "level": "debug",
        "namespace": "discosbackend.responder",
        "message": "127.0.0.1:4000 ?get-tpi,0,0 -> !get-tpi,ok,1.0,2.0 (1.235 ms)",
        "peer": "127.0.0.1:4000", "request": "?get-tpi,0,0", "reply": "!get-tpi,ok,1.0,2.0",
        "duration_ms": 1.235}
    assert stream.getvalue().count("\n") == 1


def test_json_lines_carry_tracebacks_and_any_text() -> None:
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        failure = Failure()
    stream = io.StringIO()
    write = logs.json_lines_observer(stream)
    write({"log_format": "handler failed on {request}", "log_level": LogLevel.critical,
           "log_time": 0.0, "request": "?x,caf\u00e9\ufffd", "log_failure": failure})
    write({"log_format": "{thing}", "thing": object(), "log_level": LogLevel.info,
           "log_time": 0.0, "peer": ("a", 1)})
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "critical" and first["message"] == "handler failed on ?x,caf\u00e9\ufffd"
    assert "ZeroDivisionError: boom" in first["traceback"]
    assert first["namespace"] == "-" and "request" in first
    assert second["peer"] == ["a", 1] and second["message"].startswith("<object object")


@pytest.mark.parametrize("log_format", logs.FORMATS)
def test_debug_only_when_verbose_and_factory_noise_only_then(log_format: str) -> None:
    noise = {"log_format": "Starting factory {factory!r}", "factory": "f",
             "log_level": LogLevel.info, "log_time": 0.0, "log_namespace": "twisted"}
    info = {"log_format": "connection from {peer}", "peer": "p", "log_level": LogLevel.info,
            "log_time": 0.0, "log_namespace": "discosbackend.protocol"}
    for verbose, expected in ((False, 1), (True, 3)):
        stream = io.StringIO()
        observe = logs.observer(stream, verbose=verbose, log_format=log_format)
        for event in (dict(EXCHANGE), noise, info):
            observe(dict(event))
        assert stream.getvalue().count("\n") == expected
        assert "connection from p" in stream.getvalue()


def test_factory_noise_predicate() -> None:
    # pylint: disable=protected-access
    assert logs._not_factory_noise({"log_format": "Stopping factory {f}"}) is PredicateResult.no
    assert logs._not_factory_noise({"log_format": "connection from {peer}"}) \
        is PredicateResult.maybe
    assert logs._not_factory_noise({}) is PredicateResult.maybe


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml': use text or json"):
        logs.observer(io.StringIO(), log_format="xml")


def test_begin_logging_sends_buffered_and_later_events() -> None:
    publisher = LogPublisher()
    beginner = LogBeginner(publisher, io.StringIO(), sys, warnings)
    log = Logger(namespace="test", observer=publisher)
    log.info("before {n}", n=1)
    stream = io.StringIO()
    logs.begin_logging(stream, log_format=logs.JSON, beginner=beginner)
    log.info("after {n}", n=2)
    log.debug("hidden")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == [
        "before 1", "after 2"]
