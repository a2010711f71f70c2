"""Tests for ``discos-backend console``: piped stdin, a pseudo-terminal, and
its logic in this process."""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from discosbackend.cli import console as console_module
from discosbackend.cli import main
from discosbackend.cli.console import Console
from discosbackend.client import BlockingClient
from discosbackend.commands import COMMANDS
from discosbackend.errors import InvalidRequest
from discosbackend.grammar import ok, reply
from discosbackend.handlers import Handler

from serving import CLI, ServerProcess, start_server

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


def test_console_survives_a_timeout_and_reconnects(server: ServerProcess) -> None:
    done = subprocess.run([*CLI, "console", "--timeout", "0.3", server.address],
                          input="slow,2\nget-rms\n", capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[3:] == [
        "error: slow: no reply within 0.3 s", "not connected: the next request reconnects",
        f"reconnected to {server.address}", "!version,ok,1.4", "!get-rms,ok,0.125,0.25"]


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
        terminal.type(b"help sl\t\r")  # an extension of this server, from its ?help
        terminal.expect(b"slow,<seconds:float>\r\n  answer after some seconds")
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

def opened(address: str, output: io.StringIO | None = None, **options: Any) -> Console:
    """A console connected to ``address``, its output so far cleared."""
    output = output if output is not None else io.StringIO()
    console = Console(partial(BlockingClient.connect, address, timeout=5), output, **options)
    console.open()
    output.truncate(0)
    output.seek(0)
    return console


def test_handle(server: ServerProcess) -> None:
    output = io.StringIO()
    console = opened(server.address, output)
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
    console.close()


def test_help(server: ServerProcess) -> None:
    output = io.StringIO()
    console = opened(server.address, output)
    console.help()
    text = output.getvalue()
    for command in COMMANDS.values():
        assert command.usage() in text
        assert command.summary in text
    output.truncate(0)
    output.seek(0)
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
    console.close()


def test_extension_commands_announced_by_the_server(server: ServerProcess) -> None:
    output = io.StringIO()
    console = opened(server.address, output)
    # The tests backend declares @command("slow", ...): the server lists it in ?help.
    assert console.extensions == {"slow": ("slow,<seconds:float>", "answer after some seconds")}
    console.help()
    lines = lines_of(output)
    assert any(line.startswith("  slow,<seconds:float> ") and "answer after some seconds" in line
               for line in lines)
    assert "Extensions of this server: slow." in lines
    assert "help" not in console.extensions  # the console's own word
    output.truncate(0)
    output.seek(0)
    console.handle("help slow")
    assert lines_of(output) == [
        "slow,<seconds:float>", "  answer after some seconds",
        "  an extension command of this server, as its ?help describes it"]
    assert console.completions("", "sl") == ["slow"]
    assert console.completions("help ", "?sl") == ["?slow"]
    console.close()


class Bare(Handler):
    """A server that knows the standard commands only: ``?help`` is invalid."""

    def handle(self, message: Any) -> Any:
        if message.name == "help":
            raise InvalidRequest("unknown command 'help'")
        return ok(message.name, "1.4") if message.name == "version" else ok(message.name)


def test_a_server_without_help_has_the_standard_commands_only() -> None:
    with start_server("test_cli_console:Bare") as bare:
        output = io.StringIO()
        console = opened(bare.address, output)
        assert console.extensions == {}
        assert len(console.completions("", "")) == len(COMMANDS) + 3
        console.help()
        assert not any(line.startswith("Extensions") for line in lines_of(output))
        console.close()


class Listing:
    """A connection whose server lists ``odd`` in ?help but will not describe it."""

    def exchange(self, message: Any) -> tuple[Any, str]:
        if message.arguments:
            answer = reply("help", "fail", "not described")
        else:
            answer = reply("help", "ok", "status", "help", "odd")
        return answer, str(answer)


def test_an_extension_the_server_will_not_describe_is_still_listed() -> None:
    console = Console(Listing, io.StringIO())  # type: ignore[arg-type]
    console._learn_extensions(Listing())  # type: ignore[arg-type]  # pylint: disable=protected-access
    assert console.extensions == {"odd": ("odd", "")}


def test_colours(server: ServerProcess) -> None:
    output = io.StringIO()
    console = Console(partial(BlockingClient.connect, server.address, timeout=5), output,
                      colour=True)
    console.open()
    console.greet()
    for line in ("get-rms", "set-shift,x", "nope", "!x"):
        console.handle(line)
    lines = lines_of(output)
    assert lines[0] == f"\x1b[2mconnected to {server.address}{RESET}"
    assert lines[1] == f"{GREEN}!version,ok,1.4{RESET}"
    assert lines[3] == f"{GREEN}!get-rms,ok,0.125,0.25{RESET}"
    assert lines[4].startswith(f"{RED}!set-shift,fail,")
    assert lines[5].startswith(f"{YELLOW}!nope,invalid,")
    assert lines[6].startswith(f"{RED}error: ")
    console.close()


def test_usage_is_the_wire_form() -> None:
    assert COMMANDS["status"].usage() == "status"
    assert COMMANDS["set-enable"].usage() == "set-enable,<feed1:integer>,<feed2:integer>"
    assert COMMANDS["start"].usage() == "start[,<timestamp:timestamp>]"
    assert COMMANDS["set-section"].usage().count(",") == 7


def test_completions(server: ServerProcess) -> None:
    console = opened(server.address)
    assert console.completions("", "get-tp") == ["get-tpi", "get-tp0"]
    assert console.completions("", "?get-c") == ["?get-configuration"]
    assert console.completions("", "q") == ["quit"]
    assert console.completions("", "he") == ["help"]
    assert console.completions("help ", "cal") == ["cal-on"]
    assert console.completions("help ", "qu") == []
    assert console.completions("status ", "x") == []
    assert len(console.completions("", "")) == len(COMMANDS) + 1 + 3  # slow, help, quit, exit
    console.close()


def test_run_loop(server: ServerProcess) -> None:
    typed = iter(["status", KeyboardInterrupt, "quit", "never read"])

    def read() -> str:
        line = next(typed)
        if line is KeyboardInterrupt:
            raise KeyboardInterrupt
        return line  # type: ignore[return-value]
    output = io.StringIO()
    assert opened(server.address, output).run(read) == 0
    assert lines_of(output)[1] == ""
    assert next(typed) == "never read"

    def end() -> str:
        raise EOFError
    assert opened(server.address).run(end) == 0


def test_a_lost_connection_is_reported_and_the_next_request_reconnects(
        server: ServerProcess) -> None:
    output = io.StringIO()
    console = opened(server.address, output)
    assert console.run(iter(["hang-up", "get-rms", "quit"]).__next__) == 0
    assert lines_of(output) == [
        "error: hang-up: connection closed by the server",
        "not connected: the next request reconnects",
        f"reconnected to {server.address}", "!version,ok,1.4",
        "!get-rms,ok,0.125,0.25"]


def test_a_reply_timeout_keeps_the_console_up(server: ServerProcess) -> None:
    output = io.StringIO()
    console = Console(partial(BlockingClient.connect, server.address, timeout=0.3), output)
    console.open()
    assert console.run(iter(["slow,2", "get-rms", "quit"]).__next__) == 0
    console.close()
    lines = lines_of(output)
    assert lines[2:] == [
        "error: slow: no reply within 0.3 s", "not connected: the next request reconnects",
        f"reconnected to {server.address}", "!version,ok,1.4", "!get-rms,ok,0.125,0.25"]


def test_the_console_waits_for_the_server_to_come_back() -> None:
    first = start_server()
    address = [first.address]
    output = io.StringIO()
    console = Console(lambda: BlockingClient.connect(address[0], timeout=5), output)
    console.open()
    first.stop()
    second = start_server()
    try:
        typed = iter(["status", "status", "get-rms", "quit"])

        def read() -> str:
            line = next(typed)
            if line == "get-rms":  # the server is back (at another address)
                address[0] = second.address
            return line
        assert console.run(read) == 0
    finally:
        second.stop()
    lines = lines_of(output)[2:]
    assert lines[0].startswith("error: status: connection")  # lost while asking
    assert lines[1] == "not connected: the next request reconnects"
    assert lines[2] == f"error: cannot connect to {first.address}: Connection refused"
    assert lines[3] == "not connected: the next request reconnects"
    assert lines[4:] == [f"reconnected to {second.address}", "!version,ok,1.4",
                         "!get-rms,ok,0.125,0.25"]


def test_ctrl_c_while_waiting_abandons_the_reply(server: ServerProcess,
                                                 monkeypatch: Any) -> None:
    output = io.StringIO()
    console = opened(server.address, output)
    assert console.client is not None

    def interrupted(message: Any) -> Any:
        raise KeyboardInterrupt
    monkeypatch.setattr(console.client, "exchange", interrupted)
    assert console.run(iter(["status", "quit"]).__next__) == 0
    assert lines_of(output) == ["error: interrupted while waiting for the reply",
                                "not connected: the next request reconnects"]
    assert console.client is None


def test_line_editor(client: BlockingClient, tmp_path: Path, monkeypatch: Any) -> None:
    pytest.importorskip("readline")
    monkeypatch.setenv("HOME", str(tmp_path))
    history = tmp_path / ".discos_backend_history"
    history.write_text("status\n")
    # pylint: disable=protected-access
    editor = console_module._LineEditor(Console(lambda: client, io.StringIO()))
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
