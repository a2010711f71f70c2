"""Fixtures shared by the tests that talk to a live server subprocess."""

from __future__ import annotations

from typing import Iterator

import pytest

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
