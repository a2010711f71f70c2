"""Tests for ``discos-backend send``: its output and its exit statuses."""

from __future__ import annotations

import io
from typing import Any

import pytest

from discosbackend.cli import main
from discosbackend.cli.send import parse_request_line, positive_seconds, write_line
from discosbackend.grammar import GrammarException

from serving import ServerProcess, closed_port, run_all

#: ``discos-backend`` run the way the installed script runs it.


@pytest.fixture(scope="module")
def runs(server: ServerProcess) -> dict[str, Any]:
    """``discos-backend send`` run as separate processes, all at once."""
    port = closed_port()
    cases = {
        "ok": [server.address, "?set-integration,40", "get-integration", "?get-tpi,0,0",
               "set-filename,/data/a\\,b.fits"],
        "fail": [server.address, "set-configuration,bad", "no-such-command", "status"],
        "refused": [f"127.0.0.1:{port}", "status"],
        "broken": ["--timeout", "5", server.address, "get-rms", "hang-up", "status"],
    }
    done: dict[str, Any] = {"port": port}
    done.update(run_all("send", cases, timeout=60))
    return done


# --------------------------------------------------------------------------
# The three exit statuses, as separate processes
# --------------------------------------------------------------------------

def test_all_ok_exits_0(runs: dict[str, Any]) -> None:
    done = runs["ok"]
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("!set-integration,ok\n!get-integration,ok,40\n"
                           "!get-tpi,ok,903.21,1240.57\n!set-filename,ok\n")
    assert done.stderr == ""


def test_any_fail_or_invalid_exits_1(runs: dict[str, Any]) -> None:
    done = runs["fail"]
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[:2] == ["!set-configuration,fail,unknown configuration 'bad'",
                         "!no-such-command,invalid,unknown command 'no-such-command'"]
    assert lines[2].startswith("!status,ok,") and len(lines) == 3


def test_cannot_connect_exits_2(runs: dict[str, Any]) -> None:
    done = runs["refused"]
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (f"discos-backend send: cannot connect to 127.0.0.1:{runs['port']}: "
                           "Connection refused\n")


def test_connection_broken_midway_exits_2(runs: dict[str, Any]) -> None:
    done = runs["broken"]
    assert done.returncode == 2
    assert done.stdout == "!get-rms,ok,0.125,0.25\n"
    assert done.stderr == "discos-backend send: hang-up: connection closed by the server\n"


# --------------------------------------------------------------------------
# The rest, in this process
# --------------------------------------------------------------------------

def test_timeout_exits_2(server: ServerProcess, capsys: Any) -> None:
    assert main(["send", "--timeout", "0.2", server.address, "slow,0", "slow,5"]) == 2
    out, err = capsys.readouterr()
    assert out == "!slow,ok,done\n"
    assert err == "discos-backend send: slow: no reply within 0.2 s\n"


@pytest.mark.parametrize("arguments, words", [
    (["127.0.0.1:1", "!status,ok"], "is a reply"),
    (["127.0.0.1:1", "status", "get tpi"], "bad request 'get tpi': bad name"),
    (["127.0.0.1:1", "set-filename,a\\q"], "unknown escape"),
    (["nowhere:port", "status"], "bad port 'port'"),
    (["ssl:host=a:port=1", "status"], "cannot connect to ssl:"),
])
def test_bad_command_lines_exit_2(arguments: list[str], words: str, capsys: Any) -> None:
    assert main(["send", *arguments]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("discos-backend send: ") and words in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_bad_timeouts(value: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["send", "--timeout", value, "127.0.0.1:1", "status"])
    assert exited.value.code == 2
    assert "expected seconds > 0" in capsys.readouterr().err


def test_parse_request_line() -> None:
    assert str(parse_request_line("  get-tpi,0,0 ")) == "?get-tpi,0,0"
    assert str(parse_request_line("?status")) == "?status"
    assert parse_request_line("set-filename,a\\,b").arguments == ["a,b"]
    with pytest.raises(GrammarException):
        parse_request_line("")
    assert positive_seconds("2.5") == 2.5


def test_write_line_keeps_the_bytes() -> None:
    raw = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    line = b"!set-filename,fail,no file /d\xc3\xa0ta/\xff".decode("utf-8", "surrogateescape")
    write_line(line, raw)
    assert raw.buffer.getvalue() == b"!set-filename,fail,no file /d\xc3\xa0ta/\xff\n"
    text = io.StringIO()
    write_line(line, text)
    assert text.getvalue() == "!set-filename,fail,no file /d\u00e0ta/\ufffd\n"
