"""Backends that block, end to end: real loopback sockets and real processes.

:class:`~sleepy_backends.SleepyBackend` blocks the way hardware code does
(``time.sleep``, or a call held until the test opens its gate).  Served
threaded, the server keeps answering other connections, orders every
reply, times out calls that overrun, fires time-tagged starts on time and
exits on SIGTERM.  The tests assert what arrives before what, never how
long it took.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.logger import LogLevel

from _helpers_simulator import LineClient, start_serve
from discosbackend import server
from discosbackend.handlers import DBProtocolHandler
from discosbackend.protocol import DBProtocolFactory
from sleepy_backends import SleepyBackend
from test_server import connect_to, serve

HERE = Path(__file__).resolve().parent


@defer.inlineCallbacks
def until(condition, limit: float = 10.0):
    """Fires once ``condition()`` holds, asked every 10 ms on the reactor (at most ``limit`` s).

    For what happens in the worker thread, which no Deferred reports.
    """
    deadline = reactor.seconds() + limit
    while not condition():
        assert reactor.seconds() < deadline, f"{condition} never held"
        yield task.deferLater(reactor, 0.01, lambda: None)


@pytest_twisted.inlineCallbacks
def test_another_connection_is_answered_while_a_2_s_call_runs():
    backend = SleepyBackend()
    port = yield serve(backend, threaded=True)
    try:
        slow, quick = yield defer.gatherResults([connect_to(port), connect_to(port)])
        yield defer.gatherResults([slow.wait(1), quick.wait(1)])
        slow.transport.write(b"?sleep,2\r\n")
        yield until(backend.sleeping.is_set)
        quick.transport.write(b"?status\r\n?version\r\n?is-sleeping\r\n")
        replies = yield quick.wait(4)
        assert replies[1].startswith(b"!status,ok,") and replies[1].endswith(b",ok,0")
        assert replies[2:] == [b"!version,ok,1.4", b"!is-sleeping,ok,1"]
        assert slow.lines == [b"!version,ok,1.4"]  # still sleeping: its reply comes after
        assert (yield slow.wait(2))[1] == b"!sleep,ok,slept"
        assert backend.events == ["open", "sleep", "slept"]
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_pipelined_requests_on_one_connection_are_answered_in_order():
    backend = SleepyBackend()
    port = yield serve(backend, threaded=True)
    try:
        client = yield connect_to(port)
        client.transport.write(b"?sleep,0.2\r\n?set-integration,40\r\n?version\r\n"
                               b"?set-integration,x\r\n?nosuch\r\n?get-integration\r\n")
        replies = yield client.wait(7)
        assert replies[1:] == [  # version and the errors were ready first: they waited
            b"!sleep,ok,slept", b"!set-integration,ok", b"!version,ok,1.4",
            b"!set-integration,fail,invalid integration 'x': expected an integer >= 0",
            b"!nosuch,invalid,unknown command 'nosuch'", b"!get-integration,ok,40"]
        assert backend.events == ["open", "sleep", "slept", "set_integration 40",
                                  "get_integration"]
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_a_call_that_overruns_the_timeout_finishes_in_the_background(logged):
    # The timeout runs on a fake clock, the blocking call on the backend's
    # gate: the test decides what happens first.
    backend, clock = SleepyBackend(), task.Clock()
    factory = DBProtocolFactory(DBProtocolHandler(backend, threaded=True), timeout=1,
                                clock=clock)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        client = yield connect_to(port)
        client.transport.write(b"?wait\r\n?set-integration,5\r\n")
        yield until(backend.waiting.is_set)
        clock.advance(1)  # both time out: the first is running, the second waits
        replies = yield client.wait(3)
        assert replies[1:] == [b"!wait,fail,timeout after 1 s",
                               b"!set-integration,fail,timeout after 1 s"]
        client.transport.write(b"?get-integration\r\n")  # queues behind wait()
        backend.gate.set()
        assert (yield client.wait(4))[3] == b"!get-integration,ok,0"  # set-integration dropped
        assert backend.events == ["open", "wait", "waited", "get_integration"]
        # The worker's own warnings, in order (the responder warns of each timeout too).
        warnings = [text for text in logged.texts(LogLevel.warn)
                    if text.startswith("backend call")]
        assert warnings[0].startswith("backend call wait() still running after ")
        assert warnings[1] == ("backend call set_integration() dropped: its request timed out "
                               "while it waited for wait()")
        assert warnings[2].startswith("backend call wait() overran: it finished after ")
    finally:
        backend.gate.set()
        yield port.stopListening()


@defer.inlineCallbacks
def greeted_pair(port):
    """Two connections to ``port``, each past its greeting."""
    first, second = yield defer.gatherResults([connect_to(port), connect_to(port)])
    yield defer.gatherResults([first.wait(1), second.wait(1)])
    return first, second


def assert_started_late_once(logged) -> None:
    late = [text for text in logged.texts(LogLevel.warn) if "time-tagged" in text]
    assert len(late) == 1 and re.fullmatch(
        r"time-tagged start ran 0\.[0-9]{3} s after its time: the backend was busy", late[0])


@pytest_twisted.inlineCallbacks
def test_a_time_tagged_start_fires_while_the_worker_sleeps(logged):
    backend = SleepyBackend()
    port = yield serve(backend, threaded=True)
    try:
        starter, sleeper = yield greeted_pair(port)
        starter.transport.write(f"?start,{reactor.seconds() + 0.3:.7f}\r\n".encode())
        assert (yield starter.wait(2))[1] == b"!start,ok"
        sleeper.transport.write(b"?sleep,1\r\n")
        assert (yield sleeper.wait(2))[1] == b"!sleep,ok,slept"
        starter.transport.write(b"?get-integration\r\n?status\r\n")  # the first waits
        assert (yield starter.wait(4))[3].endswith(b",ok,1")  # for the worker: after the hook
        assert backend.events == ["open", "sleep", "slept", "start_acquisition",
                                  "get_integration"]
        assert_started_late_once(logged)
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_a_time_tagged_start_that_waited_for_the_worker_past_its_time_is_not_refused(logged):
    # DISCOS sends a start a little ahead; a slow call on another connection
    # holds the worker until that time has gone by.  The start is judged by
    # when it arrived: accepted, and it starts as soon as it runs.
    backend = SleepyBackend()
    port = yield serve(backend, threaded=True)
    try:
        starter, sleeper = yield greeted_pair(port)
        sleeper.transport.write(b"?sleep,0.6\r\n")
        yield until(backend.sleeping.is_set)
        starter.transport.write(f"?start,{reactor.seconds() + 0.2:.7f}\r\n".encode())
        assert (yield starter.wait(2))[1] == b"!start,ok"  # after the sleep: 0.4 s late
        yield until(lambda: "start_acquisition" in backend.events)
        assert backend.events == ["open", "sleep", "slept", "start_acquisition"]
        assert_started_late_once(logged)
    finally:
        yield server.stop(port)


# -- processes: the command line, SIGTERM, run_server -------------------------------------


def wait_until_sleeping(client: LineClient) -> None:
    """Ask until the backend's ``sleep()`` has begun (answered on the reactor at once)."""
    deadline = time.monotonic() + 30
    while client.ask("?is-sleeping") != "!is-sleeping,ok,1":
        assert time.monotonic() < deadline, "sleep() never began"


def test_serve_a_factory_with_options_threaded_and_sigterm_during_a_call():
    served = start_serve(["--backend", "sleepy_backends:make_backend", "-o", "host=10.0.0.5",
                          "-o", "port=7000", "--threaded", "--port", "0", "--timeout", "1"],
                         cwd=HERE)
    try:
        assert served.what == "SleepyBackend (threaded)"
        with LineClient(served.port) as client, LineClient(served.port) as watcher:
            assert client.ask("?options") == "!options,ok,host='10.0.0.5',port=7000"
            # time.sleep overruns the timeout: fail, and the next request waits its turn
            assert client.ask("?sleep,1.5") == "!sleep,fail,timeout after 1 s"
            assert client.ask("?get-tpi") == "!get-tpi,ok,903.21,1240.57"
            client.send("?sleep,2")
            wait_until_sleeping(watcher)
            served.process.send_signal(signal.SIGTERM)  # during the call
            out, err = (text.decode() for text in served.process.communicate(timeout=30))
            # the pending request is answered before the connection closes
            assert client.read_line() == "!sleep,fail,shutting down"
            assert client.read_line() == ""
    finally:
        served.terminate()
    assert served.process.returncode == 0, err
    assert "Received SIGTERM" in err and "Traceback" not in err
    assert "backend call sleep() overran: it finished after 1.5" in err
    # close() ran in the worker, after the call it waited for
    assert "closed after open, sleep, slept, get_tpi, sleep, slept, close" in out


RUN_SERVER_STUCK = """
import sys
from discosbackend import server
from discosbackend.handlers import DBProtocolHandler
from sleepy_backends import SleepyBackend

server.run_server("tcp:0:interface=127.0.0.1",
                  DBProtocolHandler(SleepyBackend(), threaded=True, shutdown_wait=0.5))
print("clean exit", flush=True)
"""


def _stderr_line(process: subprocess.Popen, pattern: str, wait: float = 30) -> re.Match:
    """The first line of ``process``'s stderr matching ``pattern``, read within ``wait`` s."""
    assert process.stderr is not None
    descriptor, data, deadline = process.stderr.fileno(), b"", time.monotonic() + wait
    while time.monotonic() < deadline:
        for line in data.decode(errors="replace").splitlines():
            match = re.search(pattern, line)
            if match:
                return match
        if select.select([descriptor], [], [], deadline - time.monotonic())[0]:
            chunk = os.read(descriptor, 4096)
            if not chunk:
                break
            data += chunk
    raise AssertionError(f"no line matching {pattern!r} in {data!r}")


def test_run_server_says_what_and_where_then_sigterm_with_a_stuck_call_exits():
    process = subprocess.Popen([sys.executable, "-c", RUN_SERVER_STUCK], cwd=HERE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        match = _stderr_line(process, r"serving (.+) on tcp:127\.0\.0\.1:([0-9]+)$")
        assert match.group(1) == "SleepyBackend with DBProtocolHandler (threaded)"
        with LineClient(int(match.group(2))) as client:
            client.send("?sleep,60")  # stuck for longer than the test lasts
            with LineClient(int(match.group(2))) as watcher:
                wait_until_sleeping(watcher)
            os.kill(process.pid, signal.SIGTERM)
            out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    assert out.decode().splitlines() == ["clean exit"]  # close() never ran: sleep() held on
    assert ("shutting down without waiting for sleep(): still running after 0.5 s; close() "
            "not called yet") in err.decode()
