"""Loopback integration: real sockets on port 0, the reactor driven by pytest-twisted."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint, connectProtocol
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock

from discosbackend import server
from discosbackend.backend import Backend
from discosbackend.errors import BackendError
from discosbackend.grammar import parse_line
from discosbackend.handlers import AlwaysOkHandler, DBProtocolHandler
from serving import closed_port


class SessionBackend(Backend):
    """Just enough state for the session of docs/protocol.md section 8."""

    def __init__(self) -> None:
        super().__init__()
        self.configuration = "unconfigured"
        self.integration = 0
        self.calls: list[tuple] = []

    def get_configuration(self):
        return self.configuration

    def set_configuration(self, configuration):
        self.configuration = configuration

    def get_integration(self):
        return self.integration

    def set_integration(self, integration):
        self.integration = integration

    def set_section(self, *arguments):
        self.calls.append(("set-section",) + arguments)

    def cal_on(self, interleave):
        self.calls.append(("cal-on", interleave))

    def get_tpi(self, frequency=None, bandwidth=None):
        return [903.21, 1240.57]

    def set_filename(self, filename):
        if self.acquiring:
            raise BackendError("busy acquiring")
        self.calls.append(("set-filename", filename))


class LineCollector(Protocol):
    """Collects reply lines; ``wait(n)`` fires once ``n`` lines are in."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: defer.Deferred = defer.Deferred()
        self._waiting: list[tuple[int, defer.Deferred]] = []

    @property
    def lines(self) -> list[bytes]:
        return self.data.split(b"\r\n")[:-1]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        self._check()

    def connectionLost(self, reason=None) -> None:
        self.lost.callback(None)

    def wait(self, count: int) -> defer.Deferred:
        waiter: defer.Deferred = defer.Deferred()
        self._waiting.append((count, waiter))
        self._check()
        return waiter.addTimeout(10, reactor)

    def _check(self) -> None:
        for count, waiter in list(self._waiting):
            if len(self.lines) >= count:
                self._waiting.remove((count, waiter))
                waiter.callback(self.lines[:count])


@pytest_twisted.inlineCallbacks
def serve(backend=None, threaded=False, **options):
    port = yield server.listen(0, DBProtocolHandler(backend or SessionBackend(),
                                                    threaded=threaded),
                               interface="127.0.0.1", **options)
    return port


def connect_to(port) -> defer.Deferred:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    return connectProtocol(endpoint, LineCollector())


@pytest_twisted.inlineCallbacks
def test_full_subscan_session_of_the_real_client():
    backend = SessionBackend()
    port = yield serve(backend)
    try:
        client = yield connect_to(port)
        greeting = yield client.wait(1)
        assert greeting == [b"!version,ok,1.4"]
        session = [
            (b"?set-configuration,SK00", b"!set-configuration,ok"),
            (b"?set-integration,40", b"!set-integration,ok"),
            (b"?set-section,0,100,1500,0,0,3000,1024", b"!set-section,ok"),
            (b"?cal-on,10", b"!cal-on,ok"),
            (b"?get-tpi,0,0", b"!get-tpi,ok,903.21,1240.57"),
            (b"?status", None),
            (b"?start", b"!start,ok"),
            (b"?status", None),
            (b"?stop", b"!stop,ok"),
            (b"?set-filename,/archive/data/20250110/20250110-101012-P-Src_001_001.fits",
             b"!set-filename,ok"),
            (b"?get-configuration", b"!get-configuration,ok,SK00"),
            (b"?get-integration", b"!get-integration,ok,40"),
        ]
        for number, (request, expected) in enumerate(session, 2):
            client.transport.write(request + b"\r\n")  # lockstep, like DISCOS
            replies = yield client.wait(number)
            if expected is not None:
                assert replies[-1] == expected
        statuses = [line for line in client.lines if line.startswith(b"!status")]
        assert statuses[0].endswith(b",ok,0") and statuses[1].endswith(b",ok,1")
        seconds = statuses[0].split(b",")[2]
        assert len(seconds.split(b".")[1]) == 7
        assert abs(float(seconds) - reactor.seconds()) < 60
        assert ("set-section", 0, 100.0, 1500.0, 0, "0", 3000.0, 1024) in backend.calls
        client.transport.loseConnection()
        yield client.lost
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_pipelined_requests_are_answered_in_order_across_clients():
    port = yield serve()
    try:
        clients = yield defer.gatherResults([connect_to(port) for _ in range(4)])
        for index, client in enumerate(clients):
            client.transport.write(b"".join(b"?set-configuration,C%d-%d\n?get-configuration\n"
                                            % (index, n) for n in range(50)))
        for client in clients:
            yield client.wait(101)
            assert len(client.lines) == 101
            assert all(line in (b"!set-configuration,ok",) or line.startswith(
                b"!get-configuration,ok,C") or line == b"!version,ok,1.4"
                for line in client.lines)
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_fuzz_junk_in_random_chunks_gets_one_grammatical_reply_per_line():
    rng = random.Random(20261120)
    port = yield serve(max_line=2048)
    try:
        client = yield connect_to(port)
        yield client.wait(1)
        alphabet = b"?!,\\tabcdefgh-0123456789 \t\r\x00\x1b\xff\xc3\xa9"
        junk_lines = []
        for _ in range(400):
            kind = rng.random()
            if kind < 0.3:
                line = rng.choice([b"?status", b"?get-tpi,0,0", b"?version", b"?start",
                                   b"?stop", b"?cal-on,5", b"?set-integration,-1"])
            elif kind < 0.95:
                line = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
            else:
                line = b"?" + bytes(rng.randrange(256) for _ in range(rng.randint(2100, 5000)))
            junk_lines.append(line.replace(b"\n", b""))
        stream = b"".join(line + rng.choice([b"\n", b"\r\n"]) for line in junk_lines)
        position = 0
        while position < len(stream):
            size = rng.randint(1, 700)
            client.transport.write(stream[position:position + size])
            position += size
        replies = yield client.wait(1 + len(junk_lines))
        for reply in replies:
            message = parse_line(reply)
            assert message.is_reply()
        assert not client.lost.called
        client.transport.write(b"?version\n")
        replies = yield client.wait(2 + len(junk_lines))
        assert replies[-1] == b"!version,ok,1.4"
        assert len(client.lines) == 2 + len(junk_lines)
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_unix_socket_endpoint(tmp_path):
    path = str(tmp_path / "backend.sock")
    port = yield server.listen(f"unix:{path}", DBProtocolHandler(SessionBackend()))
    try:
        client = yield connectProtocol(UNIXClientEndpoint(reactor, path), LineCollector())
        greeting = yield client.wait(1)
        assert greeting == [b"!version,ok,1.4"]
        client.transport.loseConnection()
        yield client.lost
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_stop_closes_connections_and_calls_handler_stop():
    closed = []

    class Closing(SessionBackend):
        def close(self):
            closed.append(True)
            super().close()
    port = yield serve(Closing())
    client = yield connect_to(port)
    yield client.wait(1)
    yield server.stop(port)
    yield client.lost
    assert closed == [True]


class Hanging(SessionBackend):
    """``convert-data`` never answers."""

    def convert_data(self):
        return defer.Deferred()


@pytest_twisted.inlineCallbacks
def test_a_half_closed_client_is_closed_when_its_reply_times_out_or_after_linger():
    for options, reply in (({"timeout": 0.2}, b"!convert-data,fail,timeout after 0.2 s"),
                           ({"linger": 0.2}, None)):
        port = yield serve(Hanging(), **options)
        try:
            client = yield connect_to(port)
            yield client.wait(1)
            client.transport.write(b"?convert-data\r\n")
            client.transport.loseWriteConnection()  # as `nc -q` does: no more requests
            guard = reactor.callLater(10, client.lost.cancel)
            yield client.lost  # the server closed: no socket left half-open
            guard.cancel()
            assert client.lines[1:] == ([reply] if reply else [])
        finally:
            yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_a_backend_that_exits_gets_a_fail_and_the_server_goes_on():
    class Exiting(SessionBackend):
        def get_rms(self):
            raise SystemExit("the backend author called sys.exit()")

        def set_configuration(self, configuration):
            raise BackendError("bad\ud800,name\r\n" + "x" * 2000)
    port = yield serve(Exiting())
    try:
        client = yield connect_to(port)
        client.transport.write(b"?get-rms\r\n?set-configuration,SK00\r\n?get-rms\r\n"
                               b"?get-configuration\r\n")
        lines = yield client.wait(5)
        assert lines[1].startswith(b"!get-rms,fail,internal error: SystemExit")
        assert lines[2].startswith(b"!set-configuration,fail,bad?;name x")
        assert len(lines[2]) < 512
        assert lines[3] == lines[1]
        assert lines[4] == b"!get-configuration,ok,unconfigured"
        client.transport.loseConnection()
        yield client.lost
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_set_filename_takes_the_rest_of_the_line_commas_included():
    backend = SessionBackend()
    port = yield serve(backend)
    try:
        client = yield connect_to(port)
        client.transport.write(b"?set-filename,/data/a,b,c.fits\r\n"
                               b"?set-filename,/data/d\\,e.fits\r\n")
        lines = yield client.wait(3)
        assert lines[1:] == [b"!set-filename,ok", b"!set-filename,ok"]
        assert backend.calls == [("set-filename", "/data/a,b,c.fits"),
                                 ("set-filename", "/data/d,e.fits")]
        client.transport.loseConnection()
        yield client.lost
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_port_in_use_fails_the_deferred():
    port = yield serve()
    try:
        with pytest.raises(CannotListenError):
            yield server.listen(port.getHost().port, DBProtocolHandler(SessionBackend()),
                                interface="127.0.0.1")
    finally:
        yield server.stop(port)


@pytest.mark.parametrize("where, interface, description", [
    (8978, None, "tcp:8978"),
    ("8978", "127.0.0.1", "tcp:8978:interface=127.0.0.1"),
    (0, "::1", "tcp:0:interface=\\:\\:1"),
    ("tcp:9000:interface=127.0.0.1", None, "tcp:9000:interface=127.0.0.1"),
    ("unix:/tmp/x.sock", None, "unix:/tmp/x.sock"),
])
def test_endpoint_description(where, interface, description):
    assert server.endpoint_description(where, interface) == description


@pytest.mark.parametrize("where, interface", [(70000, None), ("unix:/x", "127.0.0.1")])
def test_endpoint_description_errors(where, interface):
    with pytest.raises(ValueError):
        server.endpoint_description(where, interface)


def test_bad_endpoint_string_raises_value_error():
    with pytest.raises(ValueError):
        server.listen("nonsense:1:2", DBProtocolHandler(SessionBackend()))


RUN_SERVER = textwrap.dedent("""
    import sys
    from twisted.internet import reactor
    from discosbackend import server
    from discosbackend.backend import Backend
    from discosbackend.handlers import DBProtocolHandler

    class Noisy(Backend):
        def close(self):
            print("handler stopped", flush=True)

    def report():
        print("running", flush=True)
    reactor.callWhenRunning(report)
    server.run_server(sys.argv[1], DBProtocolHandler(Noisy()))
    print("clean exit", flush=True)
""")


def run_server_until_sigterm(script: str, where: str) -> tuple[str, str]:
    """Run ``script``, which serves ``where``; SIGTERM once it runs; its stdout and stderr."""
    process = subprocess.Popen([sys.executable, "-c", script, where],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "running"
        os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    return out, err


def test_run_server_stops_cleanly_on_sigterm_and_says_what_it_serves_on_stderr():
    out, err = run_server_until_sigterm(RUN_SERVER, "tcp:0:interface=127.0.0.1")
    assert out.split() == ["handler", "stopped", "clean", "exit"]
    served = [line for line in err.splitlines() if "serving" in line]
    assert len(served) == 1, err
    assert re.search(r"\[discosbackend\.server#info\] serving Noisy with DBProtocolHandler on "
                     r"tcp:127\.0\.0\.1:[1-9][0-9]*$", served[0]), served


def test_run_server_on_a_port_number_listens_on_all_interfaces():
    _, err = run_server_until_sigterm(RUN_SERVER, "0")
    assert re.search(r"serving Noisy with DBProtocolHandler on tcp:0\.0\.0\.0:[1-9]", err), err


def test_run_server_logs_where_the_application_logs_when_it_began_logging(tmp_path):
    logfile = tmp_path / "application.log"
    script = RUN_SERVER.replace("import sys\n", "import sys\nfrom twisted.python import log\n"
                                f"log.startLogging(open({str(logfile)!r}, 'w'), "
                                "setStdout=False)\n", 1)
    _, err = run_server_until_sigterm(script, "tcp:0:interface=127.0.0.1")
    assert "serving Noisy with DBProtocolHandler on tcp:127.0.0.1:" in logfile.read_text()
    assert err == ""  # no observer of ours on stderr


def test_run_server_raises_when_it_cannot_listen():
    script = RUN_SERVER.replace('print("clean exit", flush=True)', "")
    with subprocess.Popen([sys.executable, "-c", script, "tcp:0:interface=192.0.2.1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        _, err = process.communicate(timeout=20)
    assert process.returncode != 0
    assert "CannotListenError" in err


# -- run_until_stopped on a MemoryReactorClock: no sockets, no real reactor -------

class FakePort:
    """Records stopListening calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopped = 0

    def stopListening(self) -> None:  # pylint: disable=invalid-name
        self.stopped += 1


def test_run_until_stopped_passes_the_ports_in_order_and_stops_them_on_shutdown():
    fake = MemoryReactorClock()
    first, second = defer.Deferred(), defer.Deferred()
    ports = [FakePort("first"), FakePort("second")]
    fake.callWhenRunning(second.callback, ports[1])  # the second listens first
    fake.callWhenRunning(first.callback, ports[0])
    readied = []
    server.run_until_stopped([first, second], ready=readied.append, reactor=fake)
    assert fake.hasRun
    assert readied == [ports]
    triggers = fake.triggers["before"]["shutdown"]
    assert len(triggers) == 1
    assert triggers[0][1] == (ports, server.DEFAULT_GRACE)
    assert not any(port.stopped for port in ports)


def test_run_until_stopped_stops_the_others_and_raises_when_one_cannot_listen():
    fake = MemoryReactorClock()
    port = FakePort("first")
    error = CannotListenError("127.0.0.1", 8978, OSError("in use"))
    readied = []
    with pytest.raises(CannotListenError) as caught:
        server.run_until_stopped([defer.succeed(port), defer.fail(error)],
                                 ready=readied.append, reactor=fake)
    assert caught.value is error
    assert port.stopped == 1
    assert not fake.hasRun
    assert not readied
    assert not fake.triggers


def test_run_until_stopped_raises_the_first_failure_when_failing_while_running():
    fake = MemoryReactorClock()
    first, second = defer.Deferred(), defer.Deferred()
    errors = [CannotListenError("a", 1, OSError("one")), CannotListenError("b", 2, OSError("two"))]
    fake.callWhenRunning(second.errback, errors[1])
    fake.callWhenRunning(first.errback, errors[0])
    with pytest.raises(CannotListenError) as caught:
        server.run_until_stopped([first, second], ready=lambda ports: None, reactor=fake)
    assert caught.value is errors[0]  # first in the order given, not in time
    assert fake.hasRun and fake.hasStopped


# -- hardening over real sockets -----------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_a_client_that_does_not_read_is_not_read_until_it_reads():
    port = yield serve(max_unsent=16 * 1024)
    try:
        paused: defer.Deferred = defer.Deferred()
        served = next(iter(port.factory.connections), None)
        assert served is None
        client = yield connect_to(port)
        yield client.wait(1)
        served = next(iter(port.factory.connections))
        original = served.pauseProducing

        def pausing():
            original()
            if not paused.called:
                paused.callback(None)
        served.pauseProducing = pausing
        client.transport.pauseProducing()  # the client stops reading its replies
        total = 200_000
        client.transport.write(b"?status\n" * total)
        yield paused.addTimeout(20, reactor)
        answered_while_paused = len(client.data)  # nothing read: nothing here
        assert answered_while_paused < 100
        assert served._holds == {"unsent"}  # pylint: disable=protected-access
        client.transport.resumeProducing()  # it reads again: everything arrives
        lines = yield client.wait(total + 1)
        assert len(lines) == total + 1 and lines[-1].startswith(b"!status,ok,")
        assert not served._holds  # pylint: disable=protected-access
        client.transport.loseConnection()
        yield client.lost
    finally:
        yield server.stop(port)


@pytest_twisted.inlineCallbacks
def test_over_the_connection_cap_a_client_is_told_and_closed():
    port = yield serve(max_connections=1)
    try:
        first = yield connect_to(port)
        yield first.wait(1)
        second = yield connect_to(port)
        yield second.lost
        assert second.lines == [b"!undefined,fail,too many connections"]
        first.transport.write(b"?status\n")
        lines = yield first.wait(2)
        assert lines[1].startswith(b"!status,ok,")
        first.transport.loseConnection()
        yield first.lost
    finally:
        yield server.stop(port)


HOLD_AND_SIGNAL = textwrap.dedent("""
    import select, socket, sys, time
    port = int(sys.argv[1])
    hog = socket.create_connection(("127.0.0.1", port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.recv(100)  # the greeting; from now on it reads nothing
    hog.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # Send until the server has not taken a byte for half a second: it
        # stopped reading this connection (its replies are not read).
        if not select.select([], [hog], [], 0.5)[1]:
            break
        try:
            sent += hog.send(b"?status\\n" * 8192)
        except BlockingIOError:
            pass
    print(sent, flush=True)
    sys.stdin.readline()
""")


def _serve_and_hog(grace: float):
    """A run_server process (grace ``grace``) held by a client that reads nothing."""
    script = RUN_SERVER.replace(
        "server.run_server(sys.argv[1], DBProtocolHandler(Noisy()))",
        "from twisted.logger import globalLogBeginner, textFileLogObserver\n"
        "globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], "
        "redirectStandardIO=False)\n"
        f"server.run_server(sys.argv[1], DBProtocolHandler(Noisy()), grace={grace})")
    port = closed_port()
    process = subprocess.Popen([sys.executable, "-c", script, f"tcp:{port}:interface=127.0.0.1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "running"
    hog = subprocess.Popen([sys.executable, "-c", HOLD_AND_SIGNAL, str(port)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert int(hog.stdout.readline()) > 0
    return process, hog


def test_sigterm_with_a_client_that_does_not_read_exits_0_within_the_grace():
    process, hog = _serve_and_hog(grace=1.0)
    try:
        started = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=20)
        took = time.monotonic() - started
    finally:
        process.kill()
        hog.kill()
        hog.wait()
    assert process.returncode == 0, err
    assert took < 10
    assert "Traceback" not in err
    assert "were not read within 1 s" in err
    assert out.split() == ["handler", "stopped", "clean", "exit"]


def test_a_second_signal_exits_at_once_without_a_traceback():
    process, hog = _serve_and_hog(grace=60.0)
    try:
        os.kill(process.pid, signal.SIGTERM)
        for line in process.stderr:  # the first one is being handled: stuck on the hog
            if "Received SIGTERM" in line:
                break
        os.kill(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
        hog.kill()
        hog.wait()
    assert process.returncode == 1
    assert "second signal" in err
    assert "Traceback" not in err


def test_describe_handler_names_the_backend_the_handler_and_the_mode():
    assert server.describe_handler(DBProtocolHandler(SessionBackend())) == \
        "SessionBackend with DBProtocolHandler"
    assert server.describe_handler(DBProtocolHandler(SessionBackend(), threaded=True)) == \
        "SessionBackend with DBProtocolHandler (threaded)"
    assert server.describe_handler(AlwaysOkHandler()) == "AlwaysOkHandler"
