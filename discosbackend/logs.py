"""Where the server's log goes and how it reads: text or JSON lines.

Everything the library logs goes through :mod:`twisted.logger`.  When
request logging is on (``listen(..., log_requests=True)``, ``discos-backend
serve -v``) each request gives one *exchange* event, logged at debug level
once its reply is ready, with the fields of :data:`EXCHANGE_FIELDS`: the
client (``peer``), the request line, the reply line and the time from the
request's arrival to its reply in milliseconds.  Connections opening and
closing are logged at info level with their ``peer``; timeouts at warning
level.

:func:`begin_logging` sends the events to a stream as text (Twisted's
usual lines) or as JSON lines, one object per event, for sites that ship
their logs to a collector.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import (FilteringLogObserver, ILogObserver, LogLevel,
                            LogLevelFilterPredicate, PredicateResult, formatEvent,
                            globalLogBeginner, textFileLogObserver)
from zope.interface import provider

__all__ = ["TEXT", "JSON", "FORMATS", "EXCHANGE_FIELDS", "EXCHANGE_FORMAT", "json_record",
           "json_lines_observer", "observer", "begin_logging"]

TEXT = "text"
JSON = "json"
#: The formats :func:`begin_logging` writes.
FORMATS = (TEXT, JSON)
#: The fields an exchange event carries (and a JSON line repeats as its own).
EXCHANGE_FIELDS = ("peer", "request", "reply", "duration_ms")
#: How an exchange event reads as text.
EXCHANGE_FORMAT = "{peer} {request} -> {reply} ({duration_ms:.3f} ms)"


def json_record(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON object for one log event.

    ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``namespace``
    and ``message`` (the event as text) always; the exchange fields and
    ``peer`` when the event has them; ``traceback`` for a logged failure.
    """
    stamp = datetime.fromtimestamp(event.get("log_time", 0.0), timezone.utc)
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": getattr(level, "name", str(level)),
        "namespace": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    for field in EXCHANGE_FIELDS:
        if field in event:
            record[field] = event[field]
    if "duration_ms" in record:
        record["duration_ms"] = round(record["duration_ms"], 3)
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return record


def json_lines_observer(stream: IO[str]) -> ILogObserver:
    """An observer writing each event to ``stream`` as one line of JSON."""
    @provider(ILogObserver)
    def write(event: dict[str, Any]) -> None:
        stream.write(json.dumps(json_record(event), ensure_ascii=False, default=str) + "\n")
        stream.flush()
    return write


def _not_factory_noise(event: dict[str, Any]) -> PredicateResult:
    """Drop Twisted's "Starting/Stopping factory <object at 0x...>" lines."""
    text = str(event.get("log_format") or "")
    if text.startswith(("Starting factory", "Stopping factory")):
        return PredicateResult.no
    return PredicateResult.maybe


def observer(stream: IO[str], *, verbose: bool = False, log_format: str = TEXT) -> ILogObserver:
    """An observer writing to ``stream`` in ``log_format``, at info level or, ``verbose``, debug."""
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r}: use {' or '.join(FORMATS)}")
    writer = json_lines_observer(stream) if log_format == JSON else textFileLogObserver(stream)
    predicates: list[Any] = [LogLevelFilterPredicate(
        defaultLogLevel=LogLevel.debug if verbose else LogLevel.info)]
    if not verbose:
        predicates.append(_not_factory_noise)
    return FilteringLogObserver(writer, predicates)


def begin_logging(stream: IO[str], *, verbose: bool = False, log_format: str = TEXT,
                  beginner: Any = None) -> None:
    """Send every log event, those buffered so far included, to ``stream``.

    Call it once per process (it starts Twisted's global logging).
    """
    (beginner or globalLogBeginner).beginLoggingTo(
        [observer(stream, verbose=verbose, log_format=log_format)], redirectStandardIO=False)
