"""``discos-backend check HOST:PORT``: the conformance checks against a running server.

Runs the checks of :mod:`discosbackend.testing.checks` (the same ones
:class:`~discosbackend.testing.BackendTestCase` runs) and prints one line
per check, ``✓ name`` or ``✗ name`` followed by what was sent, what came
back and what was expected (and why, where the real DISCOS client is the
reason), then a summary as the last line.  A failure the real client does
not survive is marked ``(DISCOS aborts on this)``.  Exit status: 0 when
every check that ran passed, 1 when any failed, 2 when the server could not
be reached or the arguments are wrong.  ``--read-only`` skips the
checks that change the backend's state, for a backend at the telescope.
"""

from __future__ import annotations

import argparse
import re
import sys
from functools import partial
from typing import Any, Callable, Sequence, TextIO
from xml.etree import ElementTree

from twisted.internet import defer

from discosbackend.cli import CommandLineError, react
from discosbackend.cli.junit import Case, junit_document, write_junit
from discosbackend.cli.send import positive_seconds
from discosbackend.client.address import Address, parse_address
from discosbackend.configurations import SRT, ConfigurationError, table_named
from discosbackend.testing.checks import Check
from discosbackend.testing.runner import (ABORTS, ABORTS_REASON, FAILED, FAILING, PASSED,
                                          SKIPPED, Result, run_checks, select_checks)
from discosbackend.testing.session import CannotConnect, Settings
from discosbackend.wording import counted

__all__ = ["add_parser", "run", "symbols", "format_result", "summary", "junit_xml",
           "list_checks"]

#: The marker of a state-changing check in ``--list``.
STATE_MARKER = "*"


def symbols(stream: TextIO) -> tuple[str, str, str]:
    """The pass, fail and skip markers: ✓ ✗ - if ``stream`` can print them, else words."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "PASS", "FAIL", "SKIP"
    return "✓", "✗", "-"


def format_result(result: Result, marks: tuple[str, str, str]) -> str:
    """The report lines of one result (no final newline)."""
    passed, failed, skipped = marks
    name = result.check.name
    if result.outcome == PASSED:
        return f"{passed} {name}"
    if result.outcome == SKIPPED:
        return f"{skipped} {name} (skipped, {result.reason})"
    if result.outcome in (FAILED, ABORTS) and result.failure is not None:
        failure = result.failure
        label = f" ({ABORTS_REASON})" if result.outcome == ABORTS else ""
        return (f"{failed} {name}{label}\n    sent:     {failure.sent}\n"
                f"    received: {failure.received}\n    expected: {failure.expected}"
                + (f"\n    why:      {failure.why}" if failure.why else ""))
    return f"{failed} {name}\n    error:    {result.reason}"


def summary(results: Sequence[Result]) -> str:
    """``N passed, M failed`` (broken checks count as failed), how many of those abort
    DISCOS, and how many were skipped."""
    counts = {outcome: 0 for outcome in (PASSED, *FAILING, SKIPPED)}
    for result in results:
        counts[result.outcome] += 1
    text = f"{counts[PASSED]} passed, {sum(counts[outcome] for outcome in FAILING)} failed"
    if counts[ABORTS]:
        text += f" ({counts[ABORTS]} of them: {ABORTS_REASON})"
    if counts[SKIPPED]:
        text += f", {counts[SKIPPED]} skipped"
    return text


def junit_xml(results: Sequence[Result], where: str = "") -> ElementTree.ElementTree:
    """The results as a JUnit XML document, one ``testcase`` per check."""
    cases = [Case(result.check.name, result.outcome,
                  message=result.failure.expected if result.failure else result.reason,
                  text=str(result.failure) if result.failure else "",
                  kind=type(result.failure).__name__ if result.failure else "CheckFailed",
                  seconds=result.seconds)
             for result in results]
    return junit_document(f"discos-backend check {where}".strip(), "discos-backend.check", cases)


def list_checks(checks: Sequence[tuple[Check, str | None]]) -> str:
    """``--list``: each check's name (marked when it changes state) and its sentence."""
    lines = []
    for check, reason in checks:
        marker = STATE_MARKER if check.changes_state else " "
        lines.append(f"{marker} {check.name}" + (f" (skipped, {reason})" if reason else ""))
        lines.append(f"      {check.sentence}")
    lines.append(f"({STATE_MARKER} changes the backend's state: --read-only skips it)")
    return "\n".join(lines)


def _names(values: Sequence[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]+", text) or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return int(text)
    return parse


def add_parser(subparsers: Any) -> None:
    """Add the ``check`` subcommand."""
    defaults = Settings()
    parser = subparsers.add_parser(
        "check", help="run the conformance checks against a running backend",
        description="Run the DISCOS protocol conformance checks against the server at "
                    "HOST:PORT and print one line per check and a summary.",
        epilog="Exit status: 0 if every check that ran passed, 1 if any failed, 2 if the "
               "server could not be reached or the arguments are wrong.")
    parser.add_argument("address", metavar="HOST:PORT", nargs="?",
                        help="the backend: HOST:PORT, [IPv6]:PORT or an endpoint string")
    parser.add_argument("--only", metavar="NAMES", action="append", default=[],
                        help="run only these checks (comma-separated; may be repeated)")
    parser.add_argument("--skip", metavar="NAMES", action="append", default=[],
                        help="skip these checks (comma-separated; may be repeated)")
    parser.add_argument("--read-only", action="store_true",
                        help="skip the checks that change the backend's state "
                             f"(marked {STATE_MARKER} in --list), e.g. at the telescope")
    parser.add_argument("--list", action="store_true",
                        help="list the checks (those selected) and exit")
    parser.add_argument("--junit-xml", metavar="FILE",
                        help="also write the results to FILE as JUnit XML")
    parser.add_argument("--timeout", type=positive_seconds, default=defaults.timeout,
                        metavar="S", help="seconds to wait for each reply "
                                          f"(default {defaults.timeout:g})")
    parser.add_argument("--greeting-timeout", type=positive_seconds,
                        default=defaults.greeting_timeout, metavar="S",
                        help="seconds to wait for the greeting "
                             f"(default {defaults.greeting_timeout:g})")
    parser.add_argument("--configuration", default=defaults.configuration, metavar="ID",
                        help="a configuration the backend accepts "
                             f"(default {defaults.configuration})")
    parser.add_argument("--configurations", metavar="FILE",
                        help="the backend's table of configurations (TOML, as for serve; "
                             f"'{SRT}' for SRT's): every configuration in it is checked for "
                             "its count of get-tpi/get-rms values")
    parser.add_argument("--sections", type=_count(1), default=None, metavar="N",
                        help="values get-tpi/get-tp0/get-rms must answer "
                             "(default: at least one, the same for all)")
    parser.add_argument("--integration", type=_count(0), default=defaults.integration,
                        metavar="MS", help="an integration time the backend accepts "
                                           f"(default {defaults.integration})")
    parser.add_argument("--time-tolerance", type=positive_seconds,
                        default=defaults.time_tolerance, metavar="S",
                        help="seconds the backend's clock may be from ours "
                             f"(default {defaults.time_tolerance:g})")
    parser.add_argument("--timed-delay", type=positive_seconds, default=defaults.timed_delay,
                        metavar="S", help="seconds ahead for time-tagged start/stop "
                                          f"(default {defaults.timed_delay:g})")
    parser.add_argument("--timed-lateness", type=positive_seconds,
                        default=defaults.timed_lateness, metavar="S",
                        help="seconds after their time by which time-tagged start/stop must "
                             f"show in status (default {defaults.timed_lateness:g})")
    parser.set_defaults(run=run)


def _settings(arguments: argparse.Namespace) -> Settings:
    """The checks' settings from the command line (the table of configurations loaded)."""
    try:
        table = table_named(arguments.configurations) if arguments.configurations else None
    except ConfigurationError as error:
        raise CommandLineError(str(error)) from None
    return Settings(configuration=arguments.configuration, sections=arguments.sections,
                    integration=arguments.integration, time_tolerance=arguments.time_tolerance,
                    timed_delay=arguments.timed_delay, timed_lateness=arguments.timed_lateness,
                    timeout=arguments.timeout, greeting_timeout=arguments.greeting_timeout,
                    configurations=table)


def run(arguments: argparse.Namespace) -> int:
    """Run the checks; return the exit status."""
    try:
        checks = select_checks(_names(arguments.only), _names(arguments.skip),
                               arguments.read_only)
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    if arguments.list:
        print(list_checks(checks))
        return 0
    if not arguments.address:
        raise CommandLineError("give the server's HOST:PORT (or --list)")
    try:
        address = parse_address(arguments.address)
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    settings = _settings(arguments)
    results = react(partial(_run_checks, address, settings, checks), (CannotConnect,))
    if arguments.junit_xml:
        write_junit(junit_xml(results, str(address)), arguments.junit_xml)
    print(summary(results), flush=True)
    return 1 if any(result.outcome in FAILING for result in results) else 0


def _run_checks(address: Address, settings: Settings, checks: list[tuple[Check, str | None]],
                reactor: Any) -> defer.Deferred[list[Result]]:
    marks = symbols(sys.stdout)
    header = [f"checking {address}: {counted(len(checks), 'check')}"]

    def report(result: Result) -> None:
        if header:  # only once the server answered: nothing on stdout if it cannot be reached
            print(header.pop(), flush=True)
        print(format_result(result, marks), flush=True)

    return run_checks(address, settings=settings, checks=checks, progress=report,
                      reactor=reactor)
