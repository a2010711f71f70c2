"""Helpers for the simulator and ``serve`` tests: a server subprocess, a line client, a wire.

:func:`start_serve` runs ``discos-backend serve`` (or any command printing
the same "serving" line) in a subprocess and waits, bounded, for that line,
which carries the bound ports.  :class:`LineClient` is a blocking socket
client that reads one CR LF line per reply.  :class:`Wire` is a simulator
behind the protocol on a fake transport: no socket at all.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Sequence

from twisted.internet import task
from twisted.internet.testing import StringTransport

from discosbackend.protocol import DBProtocolFactory
from discosbackend.simulator import BackendSimulator, SimulatorHandler
from serving import CLI

ROOT = Path(__file__).resolve().parent.parent
#: ``discos-backend`` as a command (the installed script may be a shim).
LOOPBACK = "127.0.0.1"
_SERVING_RE = re.compile(r"serving (.+?) on tcp:([0-9.]+):([0-9]+)(?:; control on tcp:([0-9.]+):([0-9]+))?")


class ServeProcess:
    """A running server subprocess: ``port``, ``control_port`` (or ``None``), ``line``."""

    def __init__(self, process: subprocess.Popen, line: str) -> None:
        self.process = process
        self.line = line
        match = _SERVING_RE.search(line)
        assert match, line
        self.what = match.group(1)
        self.port = int(match.group(3))
        self.control_port = int(match.group(5)) if match.group(5) else None

    def terminate(self, timeout: float = 10.0) -> tuple[int, str]:
        """Send SIGTERM; return the exit status and what it wrote on stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err.decode("utf-8", "replace")


def read_first_line(process: subprocess.Popen, deadline: float) -> str:
    """The first stdout line of ``process``, waiting until ``deadline`` at most."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([descriptor], [], [], left)
        if not ready:
            continue
        chunk = os.read(descriptor, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").split("\n")[0]


def start_serve(arguments: Sequence[str], *, command: Sequence[str] | None = None,
                cwd: Path | str | None = None, wait: float = 30.0) -> ServeProcess:
    """Start ``discos-backend serve ARGUMENTS`` (or ``command``); return once it listens."""
    full = list(command) if command is not None else [*CLI, "serve", *arguments]
    process = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, cwd=cwd)
    line = read_first_line(process, time.monotonic() + wait)
    if not _SERVING_RE.search(line):
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"server did not start: {line!r}\n{err.decode()}")
    return ServeProcess(process, line)


def run_serve(arguments: Sequence[str], cwd: Path | str | None = None) -> subprocess.Popen:
    """Start ``discos-backend serve ARGUMENTS`` (in ``cwd``) expected to exit by itself."""
    return subprocess.Popen([*CLI, "serve", *arguments], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=cwd)


class LineClient:
    """A blocking client: one request line out, one reply line in."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout: float = 10.0) -> None:
        self.socket = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""
        self.greeting = self.read_line()

    def read_line(self) -> str:
        """The next line, without its CR LF; ``""`` at end of stream."""
        while b"\r\n" not in self._buffer:
            chunk = self.socket.recv(65536)
            if not chunk:
                rest, self._buffer = self._buffer, b""
                return rest.decode("utf-8", "surrogateescape")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line.decode("utf-8", "surrogateescape")

    def send(self, line: str) -> None:
        """Send ``line`` with CR LF."""
        self.socket.sendall(line.encode("utf-8", "surrogateescape") + b"\r\n")

    def ask(self, line: str) -> str:
        """Send ``line`` and return the reply line."""
        self.send(line)
        return self.read_line()

    def close(self) -> None:
        """Close the connection."""
        self.socket.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Wire:
    """A simulator behind a protocol on a fake transport, timed by ``clock`` (a new one if none)."""

    def __init__(self, sim: BackendSimulator, clock: task.Clock | None = None,
                 timeout: float | None = None):
        self.sim = sim
        self.clock = clock = clock if clock is not None else task.Clock()
        self.handler = SimulatorHandler(sim)
        factory = DBProtocolFactory(self.handler, clock=clock, timeout=timeout)
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        assert self.take() == ["!version,ok,1.4"]

    def send(self, *lines: str) -> None:
        self.protocol.dataReceived("".join(line + "\r\n" for line in lines).encode())

    def take(self) -> list[str]:
        data = self.transport.value().decode()
        self.transport.clear()
        assert data == "" or data.endswith("\r\n")
        return data.split("\r\n")[:-1]

    def ask(self, line: str) -> str:
        self.send(line)
        replies = self.take()
        assert len(replies) == 1, replies
        return replies[0]
