"""``discos-backend proxy`` as a separate process, in front of ``discos-backend serve``."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from _helpers_simulator import LineClient, ServeProcess, read_first_line, start_serve
from discosbackend.transcript import CLIENT, CLOSE, OPEN, SERVER, read_transcript
from serving import CLI, closed_port

_PROXYING_RE = re.compile(r"^discos-backend: proxying tcp:127\.0\.0\.1:([0-9]+) to (\S+)")


@pytest.fixture(name="backend", scope="module")
def fixture_backend() -> Iterator[ServeProcess]:
    served = start_serve(["--port", "0", "--control-port", "none"])
    yield served
    served.terminate()


def start_proxy(*arguments: str) -> tuple[subprocess.Popen, str, int]:
    """``discos-backend proxy --listen 0 ARGUMENTS``: the process, its first line and port."""
    process = subprocess.Popen([*CLI, "proxy", "--listen", "0", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    line = read_first_line(process, time.monotonic() + 30)
    found = _PROXYING_RE.match(line)
    if found is None:
        process.kill()
        raise AssertionError(f"the proxy did not start: {line!r} {process.communicate()}")
    return process, line, int(found.group(1))


def stop(process: subprocess.Popen) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    return process.returncode, out.decode(), err.decode()


def test_a_session_through_the_proxy_is_relayed_flagged_and_recorded(
        backend: ServeProcess, tmp_path: Path) -> None:
    record = tmp_path / "session.jsonl"
    process, line, port = start_proxy("--to", f"127.0.0.1:{backend.port}",
                                      "--record", str(record))
    try:
        assert line.endswith(f"to 127.0.0.1:{backend.port}, recording to {record}")
        with LineClient(port) as client:
            assert client.greeting == "!version,ok,1.4"
            assert client.ask("?set-integration,40") == "!set-integration,ok"
            assert client.ask("?cal-on,-1").startswith("!cal-on,fail,")
            assert client.ask("?get-integration") == "!get-integration,ok,40"
        with LineClient(port) as client:
            assert client.ask("?status").startswith("!status,ok,")
    finally:
        status, out, err = stop(process)
    assert status == 0, err
    assert out.splitlines()[-1] == "discos-backend: 2 connections, 1 problem"
    assert "connection 1, client: bad arguments (invalid interleave '-1': expected an integer " \
           ">= 0): the server answers fail" in err
    assert "request: ?cal-on,-1" in err
    records = read_transcript(record)
    kinds = {number: [entry.event or entry.sender for entry in records
                      if entry.connection == number] for number in (1, 2)}
    assert kinds == {1: [OPEN, SERVER, CLIENT, SERVER, CLIENT, SERVER, CLIENT, SERVER, CLOSE],
                     2: [OPEN, SERVER, CLIENT, SERVER, CLOSE]}
    assert len(records) == 14
    assert records[2].data == b"?set-integration,40\r\n"

    replayed = subprocess.run([*CLI, "replay", str(record), f"127.0.0.1:{backend.port}"],
                              capture_output=True, text=True, timeout=60, check=False)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout.splitlines()[-1] == "6 of 6 replies match, 0 differ"


def test_an_unreachable_backend_is_logged_and_the_client_closed() -> None:
    process, _, port = start_proxy("--to", f"127.0.0.1:{closed_port()}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert client.recv(100) == b""
    finally:
        status, out, err = stop(process)
    assert status == 0
    assert "connection 1: cannot reach the backend" in err
    assert out.splitlines()[-1] == "discos-backend: 1 connection, 0 problems"


@pytest.fixture(name="taken")
def fixture_taken() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield holder.getsockname()[1]


@pytest.mark.parametrize("arguments, message", [
    (["--listen", "0", "--to", "127.0.0.1:abc"], "bad port 'abc'"),
    (["--listen", "tcp:notaport", "--to", "127.0.0.1:8978"], "bad endpoint 'tcp:notaport'"),
    (["--listen", "0", "--to", "127.0.0.1:8978", "--record", "/no/such/dir/x.jsonl"],
     "cannot write /no/such/dir/x.jsonl: No such file or directory"),
    (["--listen", "70000", "--to", "127.0.0.1:8978"], "port 70000 is out of range"),
])
def test_bad_arguments_say_what_is_wrong_and_exit_2(arguments: list[str], message: str) -> None:
    done = subprocess.run([*CLI, "proxy", *arguments], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("discos-backend proxy: ") and message in done.stderr, \
        done.stderr
    assert done.stdout == ""


def test_a_port_in_use_says_so(taken: int) -> None:
    done = subprocess.run([*CLI, "proxy", "--listen", str(taken), "--to", "127.0.0.1:8978"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr == (f"discos-backend proxy: cannot listen on tcp:{taken}:interface="
                           "127.0.0.1: Address already in use\n")


def test_missing_arguments_are_refused_by_the_parser() -> None:
    done: Any = subprocess.run([*CLI, "proxy", "--listen", "0"], capture_output=True,
                               text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--to" in done.stderr
