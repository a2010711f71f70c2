"""Run a real backend server in a subprocess, for tests that need a live socket.

    from serving import start_server

    with start_server() as server:            # the tests backend below
        client = BlockingClient.connect(server.address)

    server = shared_server()                  # one for the whole test run

``start_server(spec)`` runs ``python serving.py SPEC`` which serves, on a
free loopback port, either

- ``tests-backend``: :class:`TestsBackend`, a small in-memory backend with
  every standard command, served by :class:`TestsHandler` (which adds a
  few misbehaving commands for client tests),
- ``simulator``: :class:`discosbackend.simulator.BackendSimulator` with its
  defaults, served by its ``SimulatorHandler``, or
- ``package.module:name``: whatever calling ``name()`` returns, a
  :class:`~discosbackend.handlers.Handler` or a backend object (wrapped in
  :class:`~discosbackend.handlers.DBProtocolHandler`).

The child prints ``PORT <n>`` once it listens and stops when its stdin
closes (so it never outlives the test run), cleanly enough for coverage.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Sequence

from twisted.internet import defer, task

from discosbackend.backend import Backend, BackendError
from discosbackend.commands import FLOAT, Argument, command
from discosbackend.grammar import Message
from discosbackend.handlers import DBProtocolHandler, Handler
from discosbackend.responder import RawReply

#: The default backend spec: :class:`TestsBackend` behind :class:`TestsHandler`.
TESTS_BACKEND = "tests-backend"
#: The bundled simulator with its default settings, behind its own handler.
SIMULATOR = "simulator"
LOOPBACK = "127.0.0.1"
#: The ``discos-backend`` command, run as a separate process.
CLI = [sys.executable, "-m", "discosbackend.cli"]


def closed_port() -> int:
    """A loopback port nobody listens on (just freed)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A server subprocess: its ``port`` and ``address`` (``127.0.0.1:PORT``)."""

    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process = process
        self.port = port
        self.host = LOOPBACK

    @property
    def address(self) -> str:
        """``HOST:PORT`` of the server."""
        return f"{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the server (close its stdin) and return its exit status."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def start_server(backend_spec: str = TESTS_BACKEND, *, timeout: float | None = None,
                 extra_args: Sequence[str] = ()) -> ServerProcess:
    """Start serving ``backend_spec`` on a free loopback port; returns once it listens.

    ``timeout`` is the server's per-request timeout (seconds).
    """
    command = [sys.executable, str(Path(__file__).resolve()), backend_spec, *extra_args]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("PORT "):
        process.kill()
        process.wait()
        raise RuntimeError(f"the server did not start (said {line!r}, "
                           f"status {process.returncode})")
    return ServerProcess(process, int(line.split()[1]))


def run_all(subcommand: str, cases: dict[str, Sequence[str]],
            environments: dict[str, dict[str, str]] | None = None,
            timeout: float = 120) -> dict[str, subprocess.CompletedProcess[str]]:
    """``discos-backend SUBCOMMAND ARGUMENTS`` for each named case, as processes run all at once.

    ``environments`` adds variables to a case's environment, by case name.
    """
    extra = environments or {}
    started = {name: subprocess.Popen([*CLI, subcommand, *arguments], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, **extra.get(name, {})})
               for name, arguments in cases.items()}
    done = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=timeout)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return done


_SHARED: dict[str, ServerProcess] = {}


def shared_server(backend_spec: str = TESTS_BACKEND) -> ServerProcess:
    """One server per spec for the whole test run, started on first use.

    Cheaper than a server per test module; tests using it must leave the
    backend as they found it.  It stops when the test process exits.
    """
    server = _SHARED.get(backend_spec)
    if server is None or server.process.poll() is not None:
        server = _SHARED[backend_spec] = start_server(backend_spec)
        atexit.register(server.stop)
    return server


# --------------------------------------------------------------------------
# The child side
# --------------------------------------------------------------------------

class TestsBackend(Backend):
    """An in-memory backend: two sections, every standard command."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self) -> None:
        super().__init__()
        self.configuration = "unconfigured"
        self.integration = 0
        self.settings: dict[str, Any] = {}

    def get_configuration(self) -> str:
        return self.configuration

    def set_configuration(self, configuration: str) -> None:
        if configuration == "bad":
            raise BackendError("unknown configuration 'bad'")
        self.configuration = configuration

    def get_integration(self) -> int:
        return self.integration

    def set_integration(self, integration: int) -> None:
        self.integration = integration

    def get_tpi(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        return [903.21, 1240.57] if frequency is None else [frequency, bandwidth or 0.0]

    def get_tp0(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        return [1.5, 2.5]

    def get_rms(self) -> list[float]:
        return [0.125, 0.25]

    def set_section(self, *values: Any) -> None:
        self.settings["section"] = values

    def cal_on(self, interleave: int) -> None:
        self.settings["cal-on"] = interleave

    def set_filename(self, filename: str) -> None:
        self.settings["filename"] = filename

    def convert_data(self) -> None:
        self.settings["converted"] = True

    def set_enable(self, feed1: int, feed2: int) -> None:
        self.settings["enable"] = (feed1, feed2)

    def end_schedule(self) -> None:
        self.settings["schedule"] = "over"

    def park(self) -> None:
        self.settings["parked"] = True

    def set_shift(self, shift: int) -> None:
        self.settings["shift"] = shift

    @command("slow", Argument("seconds", FLOAT), summary="answer after some seconds")
    def slow(self, seconds: float) -> defer.Deferred:
        """Answer ``!slow,ok,done`` after ``seconds``."""
        return task.deferLater(self.clock, seconds, lambda: "done")


#: Replies :class:`TestsHandler` gives instead of asking the backend.
MISBEHAVIOUR = {
    "hang-up": RawReply(b"", close_after=True),      # close without a reply
    "garble": RawReply(b"this is no reply\r\n"),     # a line that does not parse
    "wrong-name": RawReply(b"!status,ok\r\n"),       # another command's reply
}


class TestsHandler(DBProtocolHandler):
    """:class:`TestsBackend`'s handler, plus the misbehaving commands in
    :data:`MISBEHAVIOUR`."""

    __test__ = False

    def handle(self, message: Message) -> Any:
        raw = MISBEHAVIOUR.get(message.name)
        return raw if raw is not None else super().handle(message)


def _handler(spec: str) -> Handler:
    if spec == TESTS_BACKEND:
        return TestsHandler(TestsBackend())
    if spec == SIMULATOR:
        from discosbackend.simulator import BackendSimulator, SimulatorHandler
        return SimulatorHandler(BackendSimulator())
    module_name, _, name = spec.partition(":")
    made = getattr(importlib.import_module(module_name), name)()
    return made if isinstance(made, Handler) else DBProtocolHandler(made)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the spec on a free loopback port until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("spec", nargs="?", default=TESTS_BACKEND)
    parser.add_argument("--timeout", type=float, default=None)
    arguments = parser.parse_args(argv)

    from twisted.internet import protocol, reactor, stdio

    from discosbackend import server

    class StopOnEOF(protocol.Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            if reactor.running:
                reactor.stop()

    def listening(port: Any) -> None:
        sys.stdout.write(f"PORT {port.getHost().port}\n")
        sys.stdout.flush()
        reactor.addSystemEventTrigger("before", "shutdown", server.stop, port)
        stdio.StandardIO(StopOnEOF())

    def failed(failure: Any) -> None:
        sys.stdout.write(f"ERROR {failure.getErrorMessage()}\n")
        sys.stdout.flush()
        reactor.callWhenRunning(reactor.stop)

    listening_ = server.listen(0, _handler(arguments.spec), interface=LOOPBACK,
                               timeout=arguments.timeout)
    listening_.addCallbacks(listening, failed)
    reactor.run()


if __name__ == "__main__":
    main()
