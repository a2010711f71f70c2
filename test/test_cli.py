"""The ``discos-backend`` command line as a whole: usage on errors, broken pipes,
one wording for a refused connection, ``python -m discosbackend``, and its
shared pieces (running the reactor for a subcommand: ``react``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from discosbackend import __version__
from discosbackend.cli import build_parser, main

from serving import CLI, ServerProcess, closed_port

#: The exit status of a process that died of SIGPIPE, as the shell reports it.
SIGPIPE_STATUS = 141


@pytest.mark.parametrize("subcommand, arguments", [
    ("serve", ["--prots", "9000"]),
    ("send", ["127.0.0.1:8978", "status", "--bogus"]),
    ("console", ["127.0.0.1:8978", "--colour", "never"]),
    ("check", ["--bogus"]),
])
def test_an_unknown_option_shows_the_subcommand_usage(
        subcommand: str, arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([subcommand, *arguments])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: discos-backend {subcommand} ")
    assert err.rstrip().endswith(f"discos-backend {subcommand}: error: unrecognized arguments: "
                                 + " ".join(a for a in arguments if a.startswith("--")
                                            or a in ("9000", "never")))


def test_python_m_discosbackend_is_the_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "discosbackend", "--version"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"discos-backend {__version__} (protocol 1.4)\n"


@pytest.fixture(name="piped", scope="module")
def fixture_piped(server: ServerProcess) -> dict[str, subprocess.CompletedProcess]:
    """``send``, ``console`` and ``check`` piped into a reader that leaves after one line."""
    many = ["get-rms"] * 3000  # far more output than a pipe holds
    commands = {
        "send": ([*CLI, "send", server.address, *many], None),
        "console": ([*CLI, "console", server.address], "\n".join(many) + "\n"),
        "check": ([*CLI, "check", server.address, "--read-only"], None),
    }
    done = {}
    for name, (command, typed) in commands.items():  # one at a time: each must see the close
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        assert process.stdin is not None and process.stdout is not None
        if typed is not None:
            process.stdin.write(typed.encode())
        process.stdin.close()
        first = process.stdout.readline()
        process.stdout.close()  # like `| head -1`
        err = process.stderr.read() if process.stderr is not None else b""
        status = process.wait(60)
        done[name] = subprocess.CompletedProcess(process.args, status, first.decode(),
                                                 err.decode())
    return done


@pytest.mark.parametrize("name", ["send", "console", "check"])
def test_a_reader_that_goes_away_ends_the_command_quietly(
        name: str, piped: dict[str, subprocess.CompletedProcess]) -> None:
    done = piped[name]
    assert done.stdout  # it did write before the reader left
    assert done.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert done.returncode == SIGPIPE_STATUS


def test_a_refused_connection_reads_the_same_in_every_subcommand(
        capsys: pytest.CaptureFixture[str]) -> None:
    # check, which runs a reactor, is run as a process by test_cli_check.
    where = f"127.0.0.1:{closed_port()}"
    for name, extra in (("send", ["status"]), ("console", [])):
        assert main([name, where, *extra]) == 2
        assert capsys.readouterr() == (
            "", f"discos-backend {name}: cannot connect to {where}: Connection refused\n")


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("serve", "send", "console", "check"):
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"])
        assert exited.value.code == 0
        out: Any = capsys.readouterr().out
        assert out.startswith(f"usage: discos-backend {name} ")


def run_react(work: str) -> subprocess.CompletedProcess[str]:
    """Run ``react(work)`` in a fresh process (it runs the global reactor)."""
    program = textwrap.dedent(f"""\
        from twisted.internet import defer
        from discosbackend.cli import CommandLineError, react
        try:
            print("result", react({work}, (KeyError,)))
        except CommandLineError as error:
            print("error", error)
        except KeyboardInterrupt:
            print("interrupted")
        """)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("work, said", [
    ("lambda reactor: defer.succeed(42)", "result 42"),
    ("lambda reactor: defer.fail(KeyError('no such key'))", "error 'no such key'"),
    ("lambda reactor: defer.fail(ValueError('oops'))", "error internal error: ValueError: oops"),
    ("lambda reactor: (reactor.callLater(0, reactor.stop), defer.Deferred())[1]",
     "interrupted"),
])
def test_react_returns_the_result_or_says_what_went_wrong(work: str, said: str) -> None:
    done = run_react(work)
    assert done.stdout == said + "\n", done.stderr


def test_the_new_subcommands_are_listed_after_the_others() -> None:
    text = build_parser().format_help()
    order = [text.index(name) for name in ("serve", "send", "console", "check", "proxy",
                                           "replay")]
    assert order == sorted(order)
