"""``discos-backend check HOST:PORT``: the conformance checks against a running server.

Runs the checks of :mod:`discosbackend.testing.checks` (the same ones
:class:`~discosbackend.testing.BackendTestCase` runs) and prints one line
per check, ``✓ name`` or ``✗ name`` followed by what was sent, what came
back and what was expected, then a summary as the last line.  Exit status:
0 when every check that ran passed, 1 when any failed, 2 when the server
could not be reached or the arguments are wrong.  ``--read-only`` skips the
checks that change the backend's state, for a backend at the telescope.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Callable, Sequence, TextIO
from xml.etree import ElementTree

from twisted.internet import defer, task
from twisted.python.failure import Failure

from discosbackend.cli import CommandLineError
from discosbackend.cli.send import positive_seconds
from discosbackend.client.address import Address, parse_address
from discosbackend.testing.checks import Check
from discosbackend.testing.runner import (ERROR, FAILED, PASSED, SKIPPED, Result, run_checks,
                                          select_checks)
from discosbackend.testing.session import CannotConnect, Settings
from discosbackend.wording import counted

__all__ = ["add_parser", "run", "symbols", "format_result", "summary", "junit_xml",
           "list_checks"]

#: The marker of a state-changing check in ``--list``.
STATE_MARKER = "*"
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


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
    if result.outcome == FAILED and result.failure is not None:
        failure = result.failure
        return (f"{failed} {name}\n    sent:     {failure.sent}\n"
                f"    received: {failure.received}\n    expected: {failure.expected}")
    return f"{failed} {name}\n    error:    {result.reason}"


def summary(results: Sequence[Result]) -> str:
    """``N passed, M failed`` (broken checks count as failed), and how many were skipped."""
    counts = {outcome: 0 for outcome in (PASSED, FAILED, ERROR, SKIPPED)}
    for result in results:
        counts[result.outcome] += 1
    text = f"{counts[PASSED]} passed, {counts[FAILED] + counts[ERROR]} failed"
    if counts[SKIPPED]:
        text += f", {counts[SKIPPED]} skipped"
    return text


def _xml_text(text: str) -> str:
    return _XML_UNSAFE.sub("?", text)


def junit_xml(results: Sequence[Result], where: str = "") -> ElementTree.ElementTree:
    """The results as a JUnit XML document, one ``testcase`` per check."""
    counts = {outcome: sum(1 for result in results if result.outcome == outcome)
              for outcome in (FAILED, ERROR, SKIPPED)}
    totals = {"tests": str(len(results)), "failures": str(counts[FAILED]),
              "errors": str(counts[ERROR]), "skipped": str(counts[SKIPPED]),
              "time": f"{sum(result.seconds for result in results):.3f}"}
    root = ElementTree.Element("testsuites", totals)
    suite = ElementTree.SubElement(root, "testsuite",
                                   {"name": _xml_text(f"discos-backend check {where}".strip()),
                                    **totals})
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", {
            "classname": "discos-backend.check", "name": result.check.name,
            "time": f"{result.seconds:.3f}"})
        if result.outcome == FAILED and result.failure is not None:
            failure = ElementTree.SubElement(case, "failure", {
                "type": "CheckFailed", "message": _xml_text(result.failure.expected)})
            failure.text = _xml_text(str(result.failure))
        elif result.outcome == ERROR:
            error = ElementTree.SubElement(case, "error", {"message": _xml_text(result.reason)})
            error.text = _xml_text(result.reason)
        elif result.outcome == SKIPPED:
            ElementTree.SubElement(case, "skipped", {"message": _xml_text(result.reason)})
    return ElementTree.ElementTree(root)


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
    settings = Settings(configuration=arguments.configuration, sections=arguments.sections,
                        integration=arguments.integration,
                        time_tolerance=arguments.time_tolerance,
                        timed_delay=arguments.timed_delay,
                        timed_lateness=arguments.timed_lateness, timeout=arguments.timeout,
                        greeting_timeout=arguments.greeting_timeout)
    outcome: dict[str, Any] = {}
    try:
        task.react(_react, (address, settings, checks, outcome))
    except SystemExit:
        pass
    if "failure" in outcome:
        failure: Failure = outcome["failure"]
        if failure.check(BrokenPipeError):  # stdout went away while reporting
            failure.raiseException()
        assert failure.type is not None  # a Failure always holds an exception
        raise CommandLineError(failure.getErrorMessage() if failure.check(CannotConnect) else
                               f"internal error: {failure.type.__name__}: "
                               f"{failure.getErrorMessage()}")
    if "results" not in outcome:  # the reactor stopped early: Ctrl-C or a signal
        raise KeyboardInterrupt()
    results: list[Result] = outcome["results"]
    if arguments.junit_xml:
        try:
            junit_xml(results, str(address)).write(arguments.junit_xml, encoding="utf-8",
                                                   xml_declaration=True)
        except OSError as error:
            raise CommandLineError(f"cannot write {arguments.junit_xml}: "
                                   f"{error.strerror or error}") from None
    print(summary(results), flush=True)
    return 1 if any(result.outcome in (FAILED, ERROR) for result in results) else 0


def _react(reactor: Any, address: Address, settings: Settings,
           checks: list[tuple[Check, str | None]], outcome: dict[str, Any]) -> defer.Deferred[None]:
    marks = symbols(sys.stdout)
    header = [f"checking {address}: {counted(len(checks), 'check')}"]

    def report(result: Result) -> None:
        if header:  # only once the server answered: nothing on stdout if it cannot be reached
            print(header.pop(), flush=True)
        print(format_result(result, marks), flush=True)

    def done(results: list[Result]) -> None:
        outcome["results"] = results

    def unreachable(failure: Failure) -> None:
        outcome["failure"] = failure

    running = run_checks(address, settings=settings, checks=checks, progress=report,
                         reactor=reactor)
    return running.addCallbacks(done, unreachable)
