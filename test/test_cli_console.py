"""Tests for ``discos-backend console``: piped stdin, a pseudo-terminal, and
its logic in this process."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from discosbackend.cli import console as console_module
from discosbackend.cli import main
from discosbackend.cli.console import Console
from discosbackend.client import BlockingClient
from discosbackend.commands import COMMANDS

from serving import CLI, ServerProcess

GREEN, RED, YELLOW, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"


def lines_of(output: io.StringIO) -> list[str]:
    return output.getvalue().splitlines()


# --------------------------------------------------------------------------
# Piped stdin, as a separate process
# --------------------------------------------------------------------------

def test_console_reading_stdin(server: ServerProcess) -> None:
    typed = ("help\nhelp get-tpi\nstatus\n?get-tpi,0,0\nset-configuration,bad\nnope\n"
             "bad name\nquit\n")
    done = subprocess.run([*CLI, "console", server.address], input=typed, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [f"connected to {server.address}", "!version,ok,1.4",
                         "type help for the commands, quit to leave"]
    assert any(line.startswith("  status ") and "acquiring flag" in line for line in lines)
    assert "  set-enable,<feed1:integer>,<feed2:integer>" in lines
    assert "get-tpi[,<frequency:float>[,<bandwidth:float>]]" in lines
    assert "  ok reply: value... (float)" in lines
    replies = [line for line in lines if line.startswith("!")]
    assert replies[1].startswith("!status,ok,")
    assert replies[2:] == ["!get-tpi,ok,903.21,1240.57",
                           "!set-configuration,fail,unknown configuration 'bad'",
                           "!nope,invalid,unknown command 'nope'"]
    assert lines[-1].startswith("error: bad request 'bad name'")
    assert "\x1b" not in done.stdout  # no colours off a terminal


# --------------------------------------------------------------------------
# A pseudo-terminal: readline, completion, colours, history
# --------------------------------------------------------------------------

class Terminal:
    """Reads a child's pseudo-terminal until some text shows up."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never came; got {self.seen!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child is gone
                    chunk = b""
                assert chunk, f"{text!r} never came; got {self.seen!r}"
                self.seen += chunk

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_console_on_a_terminal(server: ServerProcess, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    env.update(HOME=str(tmp_path), INPUTRC=os.devnull, TERM="xterm")
    primary, secondary = os.openpty()
    child = subprocess.Popen([*CLI, "console", server.address], stdin=secondary,
                             stdout=secondary, stderr=secondary, env=env, close_fds=True)
    os.close(secondary)
    terminal = Terminal(primary)
    try:
        terminal.expect(b"discos> ")
        terminal.type(b"stat\t\r")  # TAB completes the command name
        terminal.expect(GREEN.encode() + b"!status,ok,")
        terminal.type(b"help set-sh\t\r")
        terminal.expect(b"set-shift,<shift:integer>\r\n  set the shift")
        terminal.type(b"set-shift,x\r")
        terminal.expect(RED.encode() + b"!set-shift,fail,")
        terminal.type(b"quit\r")
        assert child.wait(20) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(primary)
    assert b"!version,ok,1.4" in terminal.seen
    history = (tmp_path / ".discos_backend_history").read_text()
    assert "status" in history and "set-shift,x" in history


# --------------------------------------------------------------------------
# The logic, in this process
# --------------------------------------------------------------------------

def test_handle(client: BlockingClient) -> None:
    output = io.StringIO()
    console = Console(client, output)
    for line in ("", "   ", "# a comment", "status", "?get-rms", "set-shift,x", "nope,1",
                 "!status", "bad name", "help nope"):
        assert console.handle(line) is True
    lines = lines_of(output)
    assert lines[0].startswith("!status,ok,")
    assert lines[1:4] == ["!get-rms,ok,0.125,0.25",
                          "!set-shift,fail,invalid shift 'x': expected an integer",
                          "!nope,invalid,unknown command 'nope'"]
    assert lines[4].startswith("error: '!status' is a reply")
    assert lines[5].startswith("error: bad request 'bad name'")
    assert lines[6] == "error: unknown command 'nope': type help for the list"
    for line in ("quit", "exit", " QUIT "):
        assert console.handle(line) is False


def test_help(client: BlockingClient) -> None:
    output = io.StringIO()
    Console(client, output).help()
    text = output.getvalue()
    for command in COMMANDS.values():
        assert command.usage() in text
        assert command.summary in text
    output = io.StringIO()
    console = Console(client, output)
    console.handle("help ?cal-on")
    assert lines_of(output) == [
        "cal-on[,<interleave:unsigned>]",
        "  calibration mark every N samples (0: off)",
        "  interleave: an integer >= 0; optional, default 0",
        "  ok reply: no values",
        "  since: 1.0",
    ]
    output.truncate(0)
    output.seek(0)
    console.handle("help set-section")
    assert "  section: an integer or * (unchanged)" in lines_of(output)
    output.truncate(0)
    output.seek(0)
    console.handle("help status")
    assert ("  ok reply: timestamp (timestamp), status (word), acquiring (boolean)"
            in lines_of(output))


def test_colours(client: BlockingClient) -> None:
    output = io.StringIO()
    console = Console(client, output, colour=True)
    console.greet()
    for line in ("get-rms", "set-shift,x", "nope", "!x"):
        console.handle(line)
    lines = lines_of(output)
    assert lines[1] == f"{GREEN}!version,ok,1.4{RESET}"
    assert lines[3] == f"{GREEN}!get-rms,ok,0.125,0.25{RESET}"
    assert lines[4].startswith(f"{RED}!set-shift,fail,")
    assert lines[5].startswith(f"{YELLOW}!nope,invalid,")
    assert lines[6].startswith(f"{RED}error: ")


def test_usage_is_the_wire_form() -> None:
    assert COMMANDS["status"].usage() == "status"
    assert COMMANDS["set-enable"].usage() == "set-enable,<feed1:integer>,<feed2:integer>"
    assert COMMANDS["start"].usage() == "start[,<timestamp:timestamp>]"
    assert COMMANDS["set-section"].usage().count(",") == 7


def test_completions(client: BlockingClient) -> None:
    console = Console(client, io.StringIO())
    assert console.completions("", "get-tp") == ["get-tpi", "get-tp0"]
    assert console.completions("", "?get-c") == ["?get-configuration"]
    assert console.completions("", "q") == ["quit"]
    assert console.completions("", "he") == ["help"]
    assert console.completions("help ", "cal") == ["cal-on"]
    assert console.completions("help ", "qu") == []
    assert console.completions("status ", "x") == []
    assert len(console.completions("", "")) == len(COMMANDS) + 3


def test_run_loop(client: BlockingClient, server: ServerProcess) -> None:
    typed = iter(["status", KeyboardInterrupt, "quit", "never read"])

    def read() -> str:
        line = next(typed)
        if line is KeyboardInterrupt:
            raise KeyboardInterrupt
        return line  # type: ignore[return-value]
    output = io.StringIO()
    assert Console(client, output).run(read) == 0
    assert lines_of(output)[1] == ""
    assert next(typed) == "never read"

    def end() -> str:
        raise EOFError
    assert Console(client, io.StringIO()).run(end) == 0

    broken = BlockingClient.connect(server.address, timeout=5)
    output = io.StringIO()
    assert Console(broken, output).run(iter(["hang-up", "status"]).__next__) == 2
    assert lines_of(output) == ["error: hang-up: connection closed by the server"]


def test_line_editor(client: BlockingClient, tmp_path: Path, monkeypatch: Any) -> None:
    pytest.importorskip("readline")
    monkeypatch.setenv("HOME", str(tmp_path))
    history = tmp_path / ".discos_backend_history"
    history.write_text("status\n")
    # pylint: disable=protected-access
    editor = console_module._LineEditor(Console(client, io.StringIO()))
    with editor:
        import readline
        assert readline.get_current_history_length() >= 1
        assert editor._complete("get-tp", 0) == "get-tpi"  # pylint: disable=protected-access
        assert editor._complete("get-tp", 1) == "get-tp0"  # pylint: disable=protected-access
        assert editor._complete("get-tp", 2) is None  # pylint: disable=protected-access
        readline.add_history("get-rms")
    assert "get-rms" in history.read_text()
    history.unlink()
    history.mkdir()  # unreadable and unwritable as a file: ignored
    with editor:
        pass


def test_use_colour(monkeypatch: Any) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True
    use = console_module._use_colour  # pylint: disable=protected-access
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use("auto", Tty()) is True
    assert use("auto", io.StringIO()) is False
    assert use("always", io.StringIO()) is True
    assert use("never", Tty()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use("auto", Tty()) is False


def test_run_in_this_process(server: ServerProcess, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("get-rms\n"))
    assert main(["console", "--color", "never", server.address]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "!get-rms,ok,0.125,0.25"


def test_cannot_connect(capsys: Any) -> None:
    assert main(["console", "--timeout", "1", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("discos-backend console: cannot connect to 127.0.0.1:1")
    assert main(["console", "no:where"]) == 2
