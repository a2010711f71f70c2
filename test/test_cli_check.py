"""Tests for ``discos-backend check``: its report, its selections and its exit statuses."""

from __future__ import annotations

import io
import os
import re
import subprocess
from typing import Any
from xml.etree import ElementTree

import pytest

from discosbackend.cli import main
from discosbackend.cli.check import format_result, junit_xml, list_checks, summary, symbols
from discosbackend.testing import (CHECK_NAMES, CHECKS, ERROR, FAILED, PASSED, SKIPPED,
                                   CheckFailed, Result, check_named, select_checks)

from _helpers_simulator import start_serve
from serving import CLI, closed_port, run_all, start_server

#: ``discos-backend`` run the way the installed script runs it.
STATE_CHANGING = [check.name for check in CHECKS if check.changes_state]
READ_ONLY = [check.name for check in CHECKS if not check.changes_state]
SARDARA = "the_real_sardara_session_is_accepted"
SKARAB = "the_real_skarab_session_is_accepted"
COUNT = "get_tpi_and_get_rms_follow_the_configuration"
WHILE_ACQUIRING = "discos_settings_are_accepted_while_acquiring"
#: Checks a server that answers ok to everything passes (it echoes arguments back).
ALWAYS_OK_PASSES = {
    "greeting_is_the_version_reply_ending_in_cr_lf", "version_reply_matches_the_greeting",
    "every_reply_ends_with_cr_lf",
    "each_line_gets_exactly_one_reply_in_order", "a_line_that_breaks_the_grammar_is_invalid",
    "a_line_starting_with_bang_is_invalid", "set_section_accepts_what_discos_sends",
    "set_section_accepts_wildcards", "cal_on_accepts_an_interleave_and_none",
    "set_enable_is_accepted", "set_shift_is_accepted", "set_filename_accepts_an_absolute_path",
    "convert_data_is_accepted", "end_schedule_is_accepted", "backend_park_is_accepted",
    "the_real_client_session_is_accepted", "every_reply_is_under_512_bytes",
    "no_reply_is_an_empty_line"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``discos-backend check`` run as separate processes, all at once.

    Only one run changes the state of the simulator it checks; the others
    sharing a server are read-only.
    """
    directory = tmp_path_factory.mktemp("check")
    with start_server("discosbackend.simulator:BackendSimulator") as simulator, \
            start_server("discosbackend.simulator:BackendSimulator") as idle, \
            start_server("discosbackend.handlers:AlwaysOkHandler") as always_ok, \
            start_server("natural_backends:NaturalBackend") as natural, \
            start_server("broken_backends:BusySetEnable") as busy, \
            start_server("broken_backends:SectionsOnly") as sections_only, \
            start_server("broken_backends:LongStatusWord") as long_status:
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "simulator": ([simulator.address, "--configurations", "srt"], {}),
            "natural": ([natural.address, "--configurations", "srt"], {}),
            "always-ok": ([always_ok.address, "--junit-xml", str(directory / "ok.xml")], {}),
            "read-only": ([idle.address, "--read-only", "--junit-xml",
                           str(directory / "read-only.xml"), "--sections", "2"], {}),
            "selected": ([idle.address, "--only",
                          "an_unknown_command_is_invalid,time_reply_is_a_timestamp_near_now",
                          "--only", "test_get_rms_replies_one_float_per_section",
                          "--skip", "time_reply_is_a_timestamp_near_now"], {}),
            "ascii": ([always_ok.address, "--only", "version_reply_matches_the_greeting,"
                                                    "an_unknown_command_is_invalid"],
                      {"PYTHONIOENCODING": "ascii"}),
            "unwritable": ([idle.address, "--only", "an_unknown_command_is_invalid",
                            "--junit-xml", str(directory / "no" / "such" / "dir.xml")], {}),
            "refused": ([f"127.0.0.1:{closed_port()}"], {}),
            "busy": ([busy.address, "--junit-xml", str(directory / "busy.xml"), "--only",
                      f"set_enable_is_accepted,{WHILE_ACQUIRING},{SARDARA},{SKARAB}"], {}),
            "sections-only": ([sections_only.address, "--configurations", "srt", "--only",
                               f"get_tpi_replies_one_float_per_section,{COUNT}"], {}),
            "long": ([long_status.address, "--only", "every_reply_is_under_512_bytes,"
                                                     "status_reply_has_a_timestamp_a_word_"
                                                     "and_a_flag"], {}),
        }
        done: dict[str, Any] = {"directory": directory}
        done.update(run_all("check", {name: arguments for name, (arguments, _) in cases.items()},
                            {name: env for name, (_, env) in cases.items()}))
    return done


def marked(stdout: str, mark: str) -> set[str]:
    """The check names on the report lines starting with ``mark``."""
    return {line.split()[1] for line in stdout.splitlines() if line.startswith(mark + " ")}


# --------------------------------------------------------------------------
# Whole runs, as separate processes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("run", ["simulator", "natural"])
def test_the_simulator_passes_every_check_and_exits_0(runs: dict[str, Any], run: str) -> None:
    # "natural": the simulator answering with numpy values, string
    # timestamps and datetimes, as backends are really written.
    done = runs[run]
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"checking {lines[0].split()[1]} {len(CHECKS)} checks"
    assert lines[1:-1] == [f"✓ {name}" for name in CHECK_NAMES]
    assert lines[-1] == f"{len(CHECKS)} passed, 0 failed"
    assert done.stderr == ""


def test_a_server_answering_ok_to_everything_fails_and_exits_1(runs: dict[str, Any]) -> None:
    done = runs["always-ok"]
    assert done.returncode == 1
    assert marked(done.stdout, "✓") == ALWAYS_OK_PASSES
    assert marked(done.stdout, "✗") == set(CHECK_NAMES) - ALWAYS_OK_PASSES
    assert ("✗ an_unknown_command_is_invalid\n"
            "    sent:     ?no-such-command\n"
            "    received: !no-such-command,ok\n"
            "    expected: !no-such-command,invalid,<reason>\n") in done.stdout
    failed = len(CHECKS) - len(ALWAYS_OK_PASSES)
    assert done.stdout.splitlines()[-1] == f"{len(ALWAYS_OK_PASSES)} passed, {failed} failed"


def test_a_fail_to_set_enable_while_acquiring_is_reported_as_aborting_discos(
        runs: dict[str, Any]) -> None:
    done = runs["busy"]
    assert done.returncode == 1, done.stdout + done.stderr
    assert marked(done.stdout, "✓") == {"set_enable_is_accepted"}
    assert marked(done.stdout, "✗") == {WHILE_ACQUIRING, SARDARA, SKARAB}
    assert (f"✗ {WHILE_ACQUIRING} (DISCOS aborts on this)\n"
            "    sent:     ?set-enable,0,0\n"
            "    received: !set-enable,fail,busy acquiring\n"
            "    expected: !set-enable,ok (while acquiring)\n"
            "    why:      DISCOS aborts on this: the real DISCOS client does not handle a fail "
            "to set-enable: its component ends (refuse only values no schedule sends)\n"
            ) in done.stdout
    assert done.stdout.splitlines()[-1] == "1 passed, 3 failed (3 of them: DISCOS aborts on this)"
    root = ElementTree.parse(runs["directory"] / "busy.xml").getroot()
    assert root.get("failures") == "3"
    assert {failure.get("type") for failure in root.iter("failure")} == {"DiscosAborts"}


def test_a_wrong_count_and_a_long_reply_fail_saying_why(runs: dict[str, Any]) -> None:
    done = runs["sections-only"]
    assert done.returncode == 1, done.stdout + done.stderr
    assert marked(done.stdout, "✓") == {"get_tpi_replies_one_float_per_section"}
    assert (f"✗ {COUNT}\n"
            "    sent:     ?set-configuration,SK77 | ?get-tpi,0,0\n") in done.stdout
    assert ("    expected: !get-tpi,ok,<value>...: 14 values, one per input of SK77\n"
            "    why:      the real DISCOS client reads exactly as many values as the "
            "configuration has inputs") in done.stdout
    done = runs["long"]
    assert done.returncode == 1, done.stdout + done.stderr
    assert marked(done.stdout, "✓") == {"status_reply_has_a_timestamp_a_word_and_a_flag"}
    assert "    expected: a reply of at most 511 bytes with its CR LF, not 6" in done.stdout
    assert ("    why:      the real DISCOS client reads each reply into a 512-byte buffer with "
            "no bounds check\n") in done.stdout
    assert done.stdout.splitlines()[-1] == "1 passed, 1 failed"


def test_junit_xml_counts_failures_with_what_was_sent(runs: dict[str, Any]) -> None:
    root = ElementTree.parse(runs["directory"] / "ok.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None
    failed = len(CHECKS) - len(ALWAYS_OK_PASSES)
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) \
        == (str(len(CHECKS)), str(failed), "0", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == list(CHECK_NAMES)
    failure = cases["an_unknown_command_is_invalid"].find("failure")
    assert failure is not None
    assert failure.get("message") == "!no-such-command,invalid,<reason>"
    assert failure.text is not None and "sent:     ?no-such-command" in failure.text
    assert cases["version_reply_matches_the_greeting"].find("failure") is None


def test_read_only_skips_the_state_changing_checks(runs: dict[str, Any]) -> None:
    done = runs["read-only"]
    assert done.returncode == 0, done.stdout
    assert marked(done.stdout, "✓") == set(READ_ONLY)
    assert marked(done.stdout, "-") == set(STATE_CHANGING)
    assert "- start_while_acquiring_fails (skipped, read-only: it changes the backend's state)" \
        in done.stdout.splitlines()
    assert done.stdout.splitlines()[-1] == \
        f"{len(READ_ONLY)} passed, 0 failed, {len(STATE_CHANGING)} skipped"
    root = ElementTree.parse(runs["directory"] / "read-only.xml").getroot()
    assert root.get("skipped") == str(len(STATE_CHANGING))
    assert len(root.findall("testsuite/testcase/skipped")) == len(STATE_CHANGING)


def test_only_and_skip_select_checks_by_name(runs: dict[str, Any]) -> None:
    done = runs["selected"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1:] == [
        "- time_reply_is_a_timestamp_near_now (skipped, by name)",
        "✓ get_rms_replies_one_float_per_section",
        "✓ an_unknown_command_is_invalid",
        "2 passed, 0 failed, 1 skipped"]


def test_words_replace_the_marks_where_they_cannot_be_printed(runs: dict[str, Any]) -> None:
    done = runs["ascii"]
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[1] == "PASS version_reply_matches_the_greeting"
    assert lines[2] == "FAIL an_unknown_command_is_invalid"
    assert lines[-1] == "1 passed, 1 failed"


def test_an_unwritable_junit_file_exits_2(runs: dict[str, Any]) -> None:
    done = runs["unwritable"]
    assert done.returncode == 2
    assert done.stderr.startswith("discos-backend check: cannot write ")
    assert done.stderr.count("\n") == 1
    assert done.stdout.splitlines()[0].endswith(": 1 check")  # one, not "1 checks"


def test_a_server_that_cannot_be_reached_exits_2_with_one_line(runs: dict[str, Any]) -> None:
    done = runs["refused"]
    assert done.returncode == 2
    assert done.stdout == ""
    # the wording send and console use too (test_cli.py)
    assert re.fullmatch(r"discos-backend check: cannot connect to 127\.0\.0\.1:[0-9]+: "
                        r"Connection refused\n", done.stderr), done.stderr


# --------------------------------------------------------------------------
# In process: no reactor needed
# --------------------------------------------------------------------------

def test_list_shows_every_check_and_marks_the_state_changing(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line[2:] for line in lines[0:-1:2]]
    assert names == list(CHECK_NAMES)
    assert lines[0] == "  greeting_is_the_version_reply_ending_in_cr_lf"
    assert lines[1] == f"      {CHECKS[0].sentence}"
    assert {line[2:] for line in lines[0:-1:2] if line.startswith("* ")} == set(STATE_CHANGING)
    assert lines[-1] == "(* changes the backend's state: --read-only skips it)"


def test_list_honours_the_selection(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list", "--read-only", "--only",
                 "stop_while_idle_fails,an_unknown_command_is_invalid"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "  an_unknown_command_is_invalid"
    assert lines[2] == ("* stop_while_idle_fails "
                        "(skipped, read-only: it changes the backend's state)")


@pytest.mark.parametrize("arguments, message", [
    (["x:1", "--only", "no_such_check"], "unknown check 'no_such_check': the checks are "),
    (["x:1", "--skip", "a,b"], "unknown check 'a', 'b'"),
    ([], "give the server's HOST:PORT (or --list)"),
    (["host:99999"], "bad port '99999'"),
    (["x:1", "--configurations", "/no/such.toml"],
     "cannot read /no/such.toml: No such file or directory"),
])
def test_bad_arguments_exit_2_with_one_line(arguments: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("discos-backend check: ")
    assert message in captured.err and captured.err.count("\n") == 1


@pytest.mark.parametrize("option", ["--sections=0", "--integration=-1", "--timeout=0",
                                    "--timed-delay=x"])
def test_bad_settings_are_refused_by_the_parser(option: str) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["check", "x:1", option])
    assert raised.value.code == 2


def test_the_marks_follow_the_stream_encoding() -> None:
    assert symbols(io.TextIOWrapper(io.BytesIO(), encoding="utf-8")) == ("✓", "✗", "-")
    assert symbols(io.TextIOWrapper(io.BytesIO(), encoding="latin-1")) == ("PASS", "FAIL", "SKIP")
    assert symbols(io.StringIO()) == ("PASS", "FAIL", "SKIP")  # no encoding: play safe


def test_a_broken_check_is_reported_as_failed_with_its_error() -> None:
    check = check_named("stop_while_idle_fails")
    results = [Result(check, PASSED, seconds=0.25),
               Result(check, FAILED, CheckFailed("?a", "!a,ok\x00", "!a,fail"), seconds=0.5),
               Result(check, ERROR, reason="ZeroDivisionError: \x1b oops"),
               Result(check, SKIPPED, reason="by name")]
    marks = ("✓", "✗", "-")
    assert format_result(results[2], marks) == \
        "✗ stop_while_idle_fails\n    error:    ZeroDivisionError: \x1b oops"
    assert summary(results) == "1 passed, 2 failed, 1 skipped"
    assert summary(results[:1]) == "1 passed, 0 failed"
    root = junit_xml(results, "h:1").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped"),
            root.get("time")) == ("4", "1", "1", "1", "0.750")
    written = io.BytesIO()
    junit_xml(results).write(written, encoding="utf-8", xml_declaration=True)
    parsed = ElementTree.fromstring(written.getvalue())
    error = parsed.find("testsuite/testcase/error")
    assert error is not None and error.get("message") == "ZeroDivisionError: ? oops"
    assert parsed.find("testsuite").get("name") == "discos-backend check"


def test_every_selection_keeps_the_declared_order() -> None:
    selected = select_checks(only=list(reversed(CHECK_NAMES)))
    assert [check.name for check, _ in selected] == list(CHECK_NAMES)
    assert list_checks(selected).count("\n") == 2 * len(CHECKS)


def test_the_check_subcommand_is_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "check" in capsys.readouterr().out


def test_check_passes_against_an_older_protocol_and_says_what_it_skipped() -> None:
    served = start_serve(["--port", "0", "--control-port", "none", "--protocol", "1.2"])
    try:
        done = subprocess.run([*CLI, "check", f"127.0.0.1:{served.port}"], capture_output=True,
                              text=True, timeout=120, check=False)
    finally:
        served.terminate()
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = [line for line in done.stdout.splitlines() if line.startswith("- ")]
    assert skipped == [
        "- set_enable_is_accepted (skipped, the server speaks protocol 1.2, which has no "
        "set-enable (from 1.3))",
        "- set_shift_is_accepted (skipped, the server speaks protocol 1.2, which has no "
        "set-shift (from 1.4))",
        "- end_schedule_is_accepted (skipped, the server speaks protocol 1.2, which has no "
        "end-schedule (from 1.4))",
        "- backend_park_is_accepted (skipped, the server speaks protocol 1.2, which has no "
        "backend-park (from 1.4))",
        "- discos_settings_are_accepted_while_acquiring (skipped, the server speaks protocol "
        "1.2, which has no set-enable (from 1.3))",
        "- the_real_sardara_session_is_accepted (skipped, the server speaks protocol 1.2, "
        "which has no set-enable (from 1.3))",
        "- the_real_skarab_session_is_accepted (skipped, the server speaks protocol 1.2, "
        "which has no set-shift (from 1.4))"]
    assert done.stdout.splitlines()[-1] == f"{len(CHECKS) - 7} passed, 0 failed, 7 skipped"
