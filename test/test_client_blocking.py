"""Tests for the blocking client, mostly against a live server subprocess."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from astropy import units
from astropy.time import Time

from discosbackend.client import (BlockingClient, CommandFailed, CommandInvalid, ConnectFailed,
                                  ConnectionLost, ProtocolError, RequestTimeout, Status)
from discosbackend.client import blocking
from discosbackend.grammar import reply, request

from _helpers_simulator import start_serve
from serving import SIMULATOR, ServerProcess, closed_port, start_server

GREETING = b"!version,ok,1.4\r\n"


class ScriptedServer:
    """A one-connection server in a thread: sends ``greeting``, then answers
    each line with ``answer(line)`` (``None`` closes the connection); without
    ``answer`` it closes right after the greeting."""

    def __init__(self, greeting: bytes, answer: Callable[[bytes], bytes | None] | None = None,
                 path: str | None = None) -> None:
        family = socket.AF_UNIX if path else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind(path or ("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.greeting = greeting
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        name = self.listener.getsockname()
        return f"unix:path={name}" if isinstance(name, str) else f"127.0.0.1:{name[1]}"

    def _serve(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        with connection:
            try:
                connection.sendall(self.greeting)
                if self.answer is None:
                    return
                for line in connection.makefile("rb"):
                    answer = self.answer(line)
                    if answer is None:
                        break
                    connection.sendall(answer)
            except OSError:  # the client went away first
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


# --------------------------------------------------------------------------
# Typed helpers, live
# --------------------------------------------------------------------------

def test_greeting(client: BlockingClient) -> None:
    assert client.server_version == "1.4"
    assert client.greeting_line == "!version,ok,1.4"
    assert str(client.greeting) == "!version,ok,1.4"
    assert not client.closed


def test_typed_helpers(client: BlockingClient) -> None:
    status = client.status()
    assert isinstance(status, Status)
    assert isinstance(status.timestamp, Time)
    assert abs((status.timestamp - Time.now()).to_value(units.s)) < 60
    assert status.status == "ok" and status.acquiring is False
    assert client.version() == "1.4"
    assert abs((client.time() - Time.now()).to_value(units.s)) < 60
    assert client.set_configuration("SK00") is None
    assert client.get_configuration() == "SK00"
    assert client.set_integration(40) is None
    assert client.get_integration() == 40
    assert client.get_tpi() == [903.21, 1240.57]
    assert client.get_tpi(1400, 300) == [1400.0, 300.0]
    assert client.get_tp0() == [1.5, 2.5]
    assert client.get_rms() == [0.125, 0.25]
    assert client.set_section(1, 50.0, 200.0, 1, "CP", 10, 2048) is None
    assert client.set_section(-1) is None
    assert client.cal_on() is None
    assert client.cal_on(10) is None
    assert client.set_filename("/archive/a,b.fits") is None
    assert client.convert_data() is None
    assert client.set_enable(0, 0) is None
    assert client.end_schedule() is None
    assert client.backend_park() is None
    assert client.set_shift(3) is None
    assert client.call("slow", 0) == ["done"]


def test_start_and_stop_at_a_time(client: BlockingClient) -> None:
    assert client.start() is None
    assert client.status().acquiring is True
    assert client.stop() is None
    soon = Time.now() + 30 * units.s
    assert client.start(at=soon) is None
    assert client.stop(at=soon + 10 * units.s) is None
    assert client.stop() is None  # cancels both
    with pytest.raises(CommandFailed) as caught:
        client.start(at=Time("2001-01-01T00:00:00", scale="utc"))
    assert caught.value.reason.startswith("past timestamp")


def test_fail_and_invalid(client: BlockingClient) -> None:
    with pytest.raises(CommandFailed) as failed:
        client.set_configuration("bad")
    assert failed.value.reason == "unknown configuration 'bad'"
    assert str(failed.value.request) == "?set-configuration,bad"
    assert str(failed.value.reply) == "!set-configuration,fail,unknown configuration 'bad'"
    with pytest.raises(CommandInvalid) as invalid:
        client.request("no-such-thing", 1)
    assert invalid.value.reason == "unknown command 'no-such-thing'"
    with pytest.raises(CommandFailed, match="takes no arguments"):
        client.request("status", "extra")
    assert client.get_tpi() == [903.21, 1240.57]  # still in step


def test_request_and_exchange(client: BlockingClient) -> None:
    answer = client.request("set-integration", 25)
    assert answer == reply("set-integration", "ok")
    failed, line = client.exchange(request("set-integration", "-1"))
    assert failed.code == "fail" and line.startswith("!set-integration,fail,")
    with pytest.raises(ValueError):
        client.exchange(reply("status", "ok"))


def test_the_typical_session_against_the_simulator() -> None:
    """docs/protocol.md section 8, through the typed helpers, against the simulator."""
    with start_server(SIMULATOR) as simulator, \
            BlockingClient.connect(simulator.address, timeout=10) as client:
        assert client.server_version == "1.4"
        assert client.get_configuration() == "unconfigured"
        client.set_configuration("SK00")
        client.set_integration(40)
        assert client.get_integration() == 40
        client.set_section(0, 100, 1500, 0, 0, 3000, 1024)
        client.set_section(1, None, None, None, None, None, None)
        client.cal_on(10)
        client.cal_on()
        client.set_enable(0, 0)
        assert len(client.get_tpi(0, 0)) == 4  # nodding on feed 0 twice, as Sardara does
        client.set_enable(7, 7)                # all feeds
        client.set_shift(3)
        tpi = client.get_tpi(0, 0)
        assert len(tpi) == 2 and all(isinstance(value, float) for value in tpi)
        assert len(client.get_tpi()) == len(client.get_tp0()) == len(client.get_rms()) == 2
        status = client.status()
        assert status.status == "ok" and status.acquiring is False
        client.start()
        assert client.status().acquiring is True
        with pytest.raises(CommandFailed, match="already acquiring"):
            client.start()
        client.stop()
        client.set_filename("/archive/data/20250110/20250110-101012-P-Src_001_001.fits")
        with pytest.raises(CommandFailed):
            client.set_integration(-1)


# --------------------------------------------------------------------------
# Connection problems
# --------------------------------------------------------------------------

def test_timeout_closes_the_client(server: ServerProcess) -> None:
    with BlockingClient.connect(server.address, timeout=0.2) as client:
        with pytest.raises(RequestTimeout, match="slow: no reply within 0.2 s"):
            client.call("slow", 5)
        assert client.closed
        with pytest.raises(ConnectionLost, match="closed"):
            client.status()


@pytest.mark.parametrize("name, error, words", [
    ("hang-up", ConnectionLost, "connection closed by the server"),
    ("garble", ProtocolError, "unreadable line"),
    ("wrong-name", ProtocolError, r"does not answer '\?wrong-name'"),
])
def test_misbehaving_server(server: ServerProcess, name: str, error: type,
                            words: str) -> None:
    client = BlockingClient(server.host, server.port, timeout=5)
    with pytest.raises(error, match=words):
        client.request(name)
    assert client.closed
    client.close()


def test_connect_to_a_closed_port() -> None:
    port = closed_port()
    with pytest.raises(ConnectFailed, match=f"cannot connect to 127.0.0.1:{port}"):
        BlockingClient("127.0.0.1", port)


def test_connect_without_a_greeting() -> None:
    with socket.socket() as listener:  # accepts (in the kernel) but never speaks
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with pytest.raises(ConnectFailed, match="no greeting .* within 0.2 s"):
            BlockingClient("127.0.0.1", listener.getsockname()[1], timeout=0.2)


@pytest.mark.parametrize("greeting, words", [
    (b"SSH-2.0-OpenSSH_9.6\r\n", "bad greeting"),
    (b"!status,ok,1.0,ok,0\r\n", "unexpected greeting"),
    (b"", "no greeting .*closed by the server"),
])
def test_bad_greetings(greeting: bytes, words: str) -> None:
    fake = ScriptedServer(greeting)
    try:
        with pytest.raises(ConnectFailed, match=words):
            BlockingClient.connect(fake.address, timeout=5)
    finally:
        fake.close()


def test_unix_socket_and_bare_lf(tmp_path: Path) -> None:
    path = str(tmp_path / "backend.sock")
    fake = ScriptedServer(b"!version,ok,1.4\n",
                          lambda line: b"!get-tpi,ok,1,2\n" if line.startswith(b"?get-tpi")
                          else None, path=path)
    try:
        with BlockingClient.connect(f"unix:path={path}", timeout=5) as client:
            assert client.server_version == "1.4"
            assert client.get_tpi() == [1.0, 2.0]
            with pytest.raises(ConnectionLost):
                client.status()
    finally:
        fake.close()
    with pytest.raises(ConnectFailed):
        BlockingClient(path=os.fspath(tmp_path / "nobody.sock"), timeout=1)


def test_a_line_too_long(monkeypatch: Any) -> None:
    monkeypatch.setattr(blocking, "MAX_LINE", 100)
    fake = ScriptedServer(GREETING, lambda line: b"!status,ok," + b"x" * 200_000)
    try:
        client = BlockingClient.connect(fake.address, timeout=5)
        with pytest.raises(ProtocolError, match="longer than 100 bytes"):
            client.status()
        assert client.closed
    finally:
        fake.close()


class BrokenSocket:
    """Stands in for a socket whose connection broke."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def sendall(self, data: bytes) -> None:
        raise self.error

    def recv(self, size: int) -> bytes:
        raise self.error

    def close(self) -> None:
        pass


@pytest.mark.parametrize("error, raised", [
    (ConnectionResetError(104, "Connection reset by peer"), ConnectionLost),
    (socket.timeout("timed out"), RequestTimeout),
])
def test_send_and_receive_errors(client: BlockingClient, error: OSError, raised: type) -> None:
    client._socket = BrokenSocket(error)  # pylint: disable=protected-access
    with pytest.raises(raised):
        client.status()
    assert client.closed
    client._socket = BrokenSocket(error)  # pylint: disable=protected-access
    with pytest.raises(raised):
        client._read_line()  # pylint: disable=protected-access


def test_connect_timeout(monkeypatch: Any) -> None:
    def too_slow(*_arguments: Any, **_options: Any) -> socket.socket:
        raise socket.timeout("timed out")
    monkeypatch.setattr(socket, "create_connection", too_slow)
    with pytest.raises(ConnectFailed, match="timed out after 0.5 s"):
        BlockingClient("192.0.2.1", 8978, timeout=0.5)


def test_reading_after_close(client: BlockingClient) -> None:
    client.close()
    client.close()
    with pytest.raises(ConnectionLost, match="closed"):
        client._read_line()  # pylint: disable=protected-access


def test_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="give a host"):
        BlockingClient()
    with pytest.raises(ValueError, match="cannot connect to ssl:"):
        BlockingClient.connect("ssl:host=example.org:port=8978")
    with pytest.raises(ValueError):
        BlockingClient.connect("example.org:http")


def test_the_server_version_comes_from_the_greeting_of_an_older_server() -> None:
    served = start_serve(["--port", "0", "--control-port", "none", "--protocol", "1.3"])
    try:
        with BlockingClient.connect(f"127.0.0.1:{served.port}", timeout=10) as client:
            assert client.server_version == "1.3"
            client.set_enable(0, 0)
            with pytest.raises(CommandInvalid, match="unknown command 'set-shift'"):
                client.set_shift(3)
    finally:
        served.terminate()
