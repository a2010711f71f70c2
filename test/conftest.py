"""Fixtures shared by the tests: a live server subprocess and its client, the log."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from twisted.logger import globalLogPublisher

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


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """The log events emitted while the test runs."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)
