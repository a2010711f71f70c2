"""The command line's shared pieces: running the reactor for a subcommand (``react``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from discosbackend.cli import build_parser


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
