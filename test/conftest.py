"""Fixtures shared by the tests: a live server subprocess and its client; the log."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from discosbackend.client import BlockingClient
from serving import ServerProcess, shared_server


@pytest.fixture(scope="module")
def server() -> ServerProcess:
    """The tests backend, served once for the whole run."""
    return shared_server()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[BlockingClient]:
    """A blocking client connected to :func:`server`."""
    with BlockingClient.connect(server.address, timeout=5) as connected:
        yield connected


class LogCapture(list):
    """The ``twisted.logger`` events emitted during a test."""

    def texts(self, level: LogLevel | None = None) -> list[str]:
        """Their text (only those at ``level``, if given)."""
        return [formatEvent(event) for event in self
                if level is None or event.get("log_level") is level]


@pytest.fixture
def logged() -> Iterator[LogCapture]:
    """The log events emitted during the test."""
    events = LogCapture()
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)
