"""``discos-backend replay``: its report, its JUnit XML and its exit statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from _helpers_simulator import start_serve
from discosbackend.cli.replay import junit_cases
from discosbackend.testing.replay import ConnectionResult, Difference, Report
from discosbackend.testing.runner import FAILED, PASSED
from serving import closed_port, run_all

SESSION = Path(__file__).parent / "sessions" / "simulator.jsonl"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``discos-backend replay`` run as separate processes, all at once."""
    directory = tmp_path_factory.mktemp("replay")
    lines = SESSION.read_text().splitlines()
    broken = directory / "broken.jsonl"
    broken.write_text(lines[0] + "\n{oops\n")
    # The second connection alone: nothing that changes the backend's state, so
    # replays of it may share a server with others.
    read_only = directory / "read-only.jsonl"
    read_only.write_text("".join(line + "\n" for line in lines if '"connection": 2' in line))
    simulator = start_serve(["--port", "0", "--control-port", "none"])
    older = start_serve(["--port", "0", "--control-port", "none", "--protocol", "1.2"])
    try:
        cases = {
            "same": [str(SESSION), f"127.0.0.1:{simulator.port}", "--timing",
                     "--junit-xml", str(directory / "same.xml")],
            "older": [str(SESSION), f"127.0.0.1:{older.port}",
                      "--junit-xml", str(directory / "older.xml")],
            "exact": [str(read_only), f"127.0.0.1:{older.port}", "--exact"],
            "missing": [str(directory / "missing.jsonl"), f"127.0.0.1:{older.port}"],
            "broken": [str(broken), f"127.0.0.1:{older.port}"],
            "refused": [str(SESSION), f"127.0.0.1:{closed_port()}"],
            "bad-address": [str(SESSION), "127.0.0.1:x"],
            "unwritable": [str(read_only), f"127.0.0.1:{older.port}", "--junit-xml",
                           str(directory / "no" / "such.xml")],
        }
        done: dict[str, Any] = {"directory": directory}
        done.update(run_all("replay", cases))
    finally:
        simulator.terminate()
        older.terminate()
    return done


def test_the_same_backend_matches_and_exits_0(runs: dict[str, Any]) -> None:
    done = runs["same"]
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"replaying {SESSION} against 127.0.0.1:")
    assert lines[0].endswith(": 2 connections")
    assert lines[1:] == ["✓ connection 1: 19 replies match", "✓ connection 2: 6 replies match",
                         "25 of 25 replies match, 0 differ"]
    suite = ElementTree.parse(runs["directory"] / "same.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")
    assert [case.get("name") for case in suite.iter("testcase")] == ["connection 1",
                                                                     "connection 2"]


def test_a_backend_of_an_older_protocol_differs_readably_and_exits_1(
        runs: dict[str, Any]) -> None:
    done = runs["older"]
    assert done.returncode == 1
    assert ("✗ connection 1: 3 of 19 replies differ\n"
            "    the greeting\n"
            "        recorded: !version,ok,1.4\n"
            "        received: !version,ok,1.2\n"
            "        differs:  version '1.2', recorded '1.4'\n"
            "    reply to ?set-enable,0,0\n"
            "        recorded: !set-enable,ok\n"
            "        received: !set-enable,invalid,unknown command 'set-enable'\n"
            "        differs:  code: recorded !set-enable,ok, received !set-enable,invalid\n"
            ) in done.stdout
    assert done.stdout.splitlines()[-1] == "19 of 25 replies match, 6 differ"
    suite = ElementTree.parse(runs["directory"] / "older.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "2")
    failure = next(suite.iter("failure"))
    assert failure.get("type") == "ReplyDiffers"
    assert failure.get("message") == "version '1.2', recorded '1.4'"
    assert "reply to ?set-enable,0,0" in failure.text


def test_exact_compares_every_byte(runs: dict[str, Any]) -> None:
    done = runs["exact"]
    assert done.returncode == 1
    assert "differs:  not the same bytes" in done.stdout


@pytest.mark.parametrize("name, message", [
    ("missing", "cannot read "),
    ("broken", "broken.jsonl line 2: not a transcript record"),
    ("refused", "cannot connect to 127.0.0.1:"),
    ("bad-address", "bad port 'x'"),
    ("unwritable", "cannot write "),
])
def test_what_cannot_be_done_says_why_and_exits_2(runs: dict[str, Any], name: str,
                                                  message: str) -> None:
    done = runs[name]
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("discos-backend replay: ") and message in done.stderr
    assert done.stderr.count("\n") == 1
    if name != "unwritable":
        assert done.stdout == ""


def test_one_junit_case_per_connection() -> None:
    difference = Difference(2, b"?status\r\n", b"!status,ok\r\n", None, "nothing within 1 s")
    report = Report([ConnectionResult(1, 3), ConnectionResult(2, 1, [difference], 0.5)])
    cases = junit_cases(report)
    assert [(case.name, case.outcome, case.message) for case in cases] == [
        ("connection 1", PASSED, ""), ("connection 2", FAILED, "nothing within 1 s")]
    assert cases[1].text.startswith("✗ connection 2: 1 of 1 reply differs\n")
    assert cases[1].seconds == 0.5
