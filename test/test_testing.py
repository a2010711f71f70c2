"""The conformance suite, tested: the simulator passes it, broken backends fail it.

``TestSimulatorConforms`` is collected and run by pytest exactly as a
backend author's subclass would be.  The other cases are run
programmatically through trial's loader, and the test asserts which of
their tests failed: each broken backend must fail the checks about what it
breaks, and no others.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.trial import reporter, runner
from twisted.trial.unittest import SynchronousTestCase

from discosbackend import server
from discosbackend.client.address import Address
from discosbackend.configurations import parse, srt
from discosbackend.grammar import Message, ok
from discosbackend.handlers import DBProtocolHandler, Handler
from discosbackend.responder import RawReply
from discosbackend.simulator import BackendSimulator
from discosbackend.testing import (ABORTS, CHECK_NAMES, CHECKS, ERROR, FAILED, PASSED, SKIPPED,
                                   BackendTestCase, CannotConnect, Check, CheckFailed,
                                   DiscosAborts, NotInServerVersion, Settings, check_named,
                                   connect, run_check, run_checks, select_checks, wait_for)
from discosbackend.testing.session import (EMPTY_LINE_REASON, StateChangeRefused, show,
                                           show_lines)
from discosbackend.timediscos import TICKS_PER_SECOND

from broken_backends import (BusySetEnable, DeafStart, EagerStart, FailUnknownHandler,
                             LongStatusWord, RewritingFactory, Scripted, SectionsOnly,
                             TwoValueStatus, blank_line_factory, doubling_factory,
                             lf_only_factory, listen_raw, no_greeting_factory, stop_raw)

STATE_CHANGING = {check.name for check in CHECKS if check.changes_state}
#: A table of one configuration, XK77: four sections on feeds 0 and 1, nodding like SKARAB.
XK_TABLE = parse("""
[families]
XK = { nodding = "distinct-feeds" }
[configurations.XK77]
family = "XK"
bandwidth = 700
bins = 512
feeds = [0, 0, 1, 1]
polarizations = ["L", "R", "L", "R"]
""")
SARDARA = "the_real_sardara_session_is_accepted"
SKARAB = "the_real_skarab_session_is_accepted"
COUNT = "get_tpi_and_get_rms_follow_the_configuration"
WHILE_ACQUIRING = "discos_settings_are_accepted_while_acquiring"
READ_ONLY = set(CHECK_NAMES) - STATE_CHANGING
STATUS = "status_reply_has_a_timestamp_a_word_and_a_flag"


#: A session recorded with ``discos-backend proxy --record`` in front of
#: ``discos-backend serve`` (the simulator, defaults), driven by ``discos-backend send``
#: (the real client's session, lockstep) and a raw socket (pipelined and split lines).
RECORDED_SESSION = Path(__file__).parent / "sessions" / "simulator.jsonl"


class TestSimulatorConforms(BackendTestCase):
    """The bundled simulator passes every check (collected by pytest like a user's case),
    with the count of every configuration of SRT's table."""

    configurations = "srt"

    def make_backend(self) -> BackendSimulator:
        return BackendSimulator()

    def test_the_recorded_simulator_session_replays(self) -> None:
        report = self.replay(RECORDED_SESSION)
        self.assertEqual([result.compared for result in report.connections], [19, 6])


class OlderProtocolCase(BackendTestCase):
    """The simulator speaking protocol 1.2: checks of later commands are skipped."""

    __test__ = False

    def make_backend(self) -> DBProtocolHandler:
        return DBProtocolHandler(BackendSimulator(), protocol="1.2")

    def test_replaying_a_1_4_session(self) -> None:
        self.replay(RECORDED_SESSION)


# --------------------------------------------------------------------------
# Cases run programmatically (``__test__ = False``: pytest leaves them alone)
# --------------------------------------------------------------------------

class TwoValueStatusCase(BackendTestCase):
    __test__ = False

    def make_backend(self) -> TwoValueStatus:
        return TwoValueStatus()


class FailUnknownCase(BackendTestCase):
    """``make_backend`` may return a Handler: it is served as it is."""

    __test__ = False

    def make_backend(self) -> FailUnknownHandler:
        return FailUnknownHandler(BackendSimulator())


class ReadOnlyCase(BackendTestCase):
    __test__ = False
    read_only = True
    sections = 4

    def make_backend(self) -> BackendSimulator:
        return BackendSimulator(sections=4)


class DeclaredCase(BackendTestCase):
    """A backend with a table of its own, one integration, and no data conversion."""

    __test__ = False
    configuration = "XK77"
    configurations = XK_TABLE
    integration = 25
    skip_checks = ("convert_data_is_accepted", "test_backend_park_is_accepted",
                   "the_real_sardara_session_is_accepted", "the_real_skarab_session_is_accepted")

    def make_backend(self) -> BackendSimulator:
        return XK77Only(configurations=XK_TABLE)


class WrongSectionsCase(BackendTestCase):
    __test__ = False
    sections = 3

    def make_backend(self) -> BackendSimulator:
        return BackendSimulator(sections=2)


class NothingConfigured(BackendTestCase):
    __test__ = False


def case_for(backend: type, **attributes: Any) -> type[BackendTestCase]:
    """A case testing a fresh ``backend()`` each test, with the ``attributes`` declared."""
    attributes.update(__test__=False, make_backend=lambda self: backend())
    return type(f"{backend.__name__}Case", (BackendTestCase,), attributes)


LongStatusCase = case_for(LongStatusWord)
BusySetEnableCase = case_for(BusySetEnable)
SectionsOnlyCase = case_for(SectionsOnly, configurations="srt")  # every SRT count checked


class XK77Only(BackendSimulator):
    """Knows the configurations of its table (XK77: 4 sections), and no integration but 25 ms."""

    def set_configuration(self, configuration: str) -> None:
        if configuration not in self.configurations:
            raise ValueError(configuration)
        super().set_configuration(configuration)

    def set_integration(self, integration: int) -> None:
        if integration != 25:
            raise ValueError(integration)
        super().set_integration(integration)


def run_case(case: type[unittest.TestCase]) -> reporter.TestResult:
    """Run every test of ``case`` with trial's loader and a plain result."""
    result = reporter.TestResult()
    runner.TestLoader().loadClass(case).run(result)
    return result


def failure_of(result: reporter.TestResult, name: str) -> str:
    """The failure message of the test of check ``name``."""
    return next(str(error.value) for test, error in result.failures
                if test.id().endswith(f".test_{name}"))


def names_of(outcomes: list[Any]) -> set[str]:
    """The check names of the tests in a result list (of tests or (test, reason) pairs)."""
    tests = [entry[0] if isinstance(entry, tuple) else entry for entry in outcomes]
    return {test.id().rsplit(".", 1)[-1].removeprefix("test_") for test in tests}


def failing(result: reporter.TestResult) -> set[str]:
    """The checks that failed; errors (a broken check, not server) make the test fail."""
    assert not result.errors, result.errors
    return names_of(result.failures)


def address_case(address: Any, **attributes: Any) -> type[BackendTestCase]:
    """A case testing the server at ``address`` (as a user would write it)."""
    attributes.update(__test__=False, address=address)
    return type("AddressCase", (BackendTestCase,), attributes)


class TheSuiteCatchesBrokenBackends(SynchronousTestCase):
    """Each broken backend fails the checks about what it breaks, and no others."""

    def test_status_with_two_values_fails_the_status_checks(self) -> None:
        result = run_case(TwoValueStatusCase)
        self.assertEqual(failing(result), {
            "status_reply_has_a_timestamp_a_word_and_a_flag",
            "start_and_stop_toggle_the_acquiring_flag",
            "time_tagged_start_and_stop_happen_on_time",
            "the_real_client_session_is_accepted", SARDARA, SKARAB, WHILE_ACQUIRING})
        self.assertEqual(result.successes, len(CHECKS) - 7)
        failure = dict((test.id().rsplit(".test_", 1)[-1], error)
                       for test, error in result.failures)
        message = str(failure["status_reply_has_a_timestamp_a_word_and_a_flag"].value)
        self.assertIn("sent:     ?status", message)
        self.assertIn("received: !status,fail,backend returned 2 values", message)

    def test_replies_ending_in_lf_only_fail_the_cr_lf_checks(self) -> None:
        port = listen_raw(lf_only_factory())
        try:
            result = run_case(address_case(f"127.0.0.1:{port.getHost().port}"))
        finally:
            wait_for(stop_raw(port))
        self.assertEqual(failing(result), {"greeting_is_the_version_reply_ending_in_cr_lf",
                                           "every_reply_ends_with_cr_lf"})

    def test_no_greeting_fails_the_greeting_checks(self) -> None:
        port = listen_raw(no_greeting_factory())
        try:
            result = run_case(address_case(("127.0.0.1", port.getHost().port),
                                           greeting_timeout=0.05))
        finally:
            wait_for(stop_raw(port))
        self.assertEqual(failing(result), {"greeting_is_the_version_reply_ending_in_cr_lf",
                                           "version_reply_matches_the_greeting"})
        failure = next(error for test, error in result.failures
                       if test.id().endswith("greeting_is_the_version_reply_ending_in_cr_lf"))
        self.assertIn("received: nothing within 0.05 s", str(failure.value))

    def test_unknown_command_answered_fail_fails_the_unknown_command_check(self) -> None:
        result = run_case(FailUnknownCase)
        self.assertEqual(failing(result), {"an_unknown_command_is_invalid"})

    def test_a_600_byte_reply_fails_the_size_checks_saying_why(self) -> None:
        result = run_case(LongStatusCase)
        self.assertEqual(failing(result), {"every_reply_is_under_512_bytes", SARDARA, SKARAB})
        message = failure_of(result, "every_reply_is_under_512_bytes")
        self.assertIn("sent:     ?status\nreceived: !status,ok,", message)
        self.assertIn("expected: a reply of at most 511 bytes with its CR LF, not 6", message)
        self.assertIn("why:      the real DISCOS client reads each reply into a 512-byte buffer",
                      message)

    def test_a_fail_to_set_enable_while_acquiring_aborts_discos(self) -> None:
        result = run_case(BusySetEnableCase)
        self.assertEqual(failing(result), {WHILE_ACQUIRING, SARDARA, SKARAB})
        for name in (WHILE_ACQUIRING, SARDARA, SKARAB):
            # A failed test shows the check's lines, not the library's exception.
            text = failure_of(result, name)
            self.assertIn("received: !set-enable,fail,busy acquiring", text)
            self.assertIn("why:      DISCOS aborts on this: the real DISCOS client does not "
                          "handle a fail to set-enable: its component ends "
                          "(refuse only values no schedule sends)", text)
        self.assertIn("expected: !set-enable,ok (while acquiring)",
                      failure_of(result, WHILE_ACQUIRING))
        self.assertIn("(step 36 of 49 of the real Sardara session)", failure_of(result, SARDARA))

    def test_a_wrong_count_after_sk77_fails_the_count_checks(self) -> None:
        result = run_case(SectionsOnlyCase)
        self.assertEqual(failing(result), {COUNT, SARDARA, SKARAB})
        message = failure_of(result, COUNT)
        self.assertIn("sent:     ?set-configuration,SK77 | ?get-tpi,0,0\n", message)
        self.assertIn("expected: !get-tpi,ok,<value>...: 14 values, one per input of SK77\n",
                      message)
        self.assertIn("why:      the real DISCOS client reads exactly as many values as the "
                      "configuration has inputs", message)
        self.assertIn("14 values, one per input of SK77", failure_of(result, SARDARA))
        message = failure_of(result, SKARAB)
        self.assertIn("sent:     ?set-configuration,SKARAB_1 | ?set-enable,0,3 | ?get-tpi,0,0",
                      message)
        self.assertIn("4 values, one per input of SKARAB_1 after set-enable,0,3", message)

    def test_wrong_number_of_sections_fails_the_per_section_checks(self) -> None:
        result = run_case(WrongSectionsCase)
        self.assertEqual(failing(result), {"get_tpi_replies_one_float_per_section",
                                           "get_tp0_replies_one_float_per_section",
                                           "get_rms_replies_one_float_per_section"})


class TheSuiteCanBeDeclaredAndSelected(SynchronousTestCase):
    """Declarations, skips and read-only mode."""

    def test_declared_configuration_and_skips_let_a_picky_backend_pass(self) -> None:
        result = run_case(DeclaredCase)
        self.assertEqual(failing(result), set())
        self.assertEqual(names_of(result.skips),
                         {"convert_data_is_accepted", "backend_park_is_accepted",
                          "the_real_sardara_session_is_accepted",
                          "the_real_skarab_session_is_accepted"})
        self.assertEqual(result.skips[0][1], f"{result.skips[0][0].id().split('test_')[-1]}"
                                             " is in skip_checks")

    def test_read_only_skips_exactly_the_state_changing_checks(self) -> None:
        result = run_case(ReadOnlyCase)
        self.assertEqual(failing(result), set())
        self.assertEqual(names_of(result.skips), STATE_CHANGING)
        self.assertEqual(result.successes, len(READ_ONLY))

    def test_a_declared_table_is_a_table_a_toml_file_or_srt(self) -> None:
        test = f"test_{STATUS}"
        self.assertIs(SectionsOnlyCase(test).check_settings().configurations, srt())
        self.assertIs(DeclaredCase(test).check_settings().configurations, XK_TABLE)
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "site.toml"
            path.write_text('families.F = { nodding = "both-feeds" }\n'
                            'configurations.XK = { family = "F", bandwidth = 5, bins = 8, '
                            'feeds = [0], polarizations = ["S"] }\n', encoding="utf-8")
            settings = case_for(BackendSimulator, configurations=str(path))(test).check_settings()
        self.assertEqual(list(settings.configurations or {}), ["XK"])
        self.assertEqual(hash(settings), hash(Settings()))  # the table is left out of the hash

    def test_checks_of_commands_newer_than_the_servers_version_are_skipped(self) -> None:
        result = run_case(OlderProtocolCase)
        self.assertEqual(names_of(result.skips), {"set_enable_is_accepted",
                                                  "set_shift_is_accepted",
                                                  "end_schedule_is_accepted",
                                                  "backend_park_is_accepted",
                                                  "discos_settings_are_accepted_while_acquiring",
                                                  "the_real_sardara_session_is_accepted",
                                                  "the_real_skarab_session_is_accepted"})
        self.assertIn(("the server speaks protocol 1.2, which has no set-enable (from 1.3)"),
                      [str(reason) for _, reason in result.skips])
        self.assertEqual(result.successes, len(CHECKS) - 7)
        self.assertEqual(names_of(result.failures), {"replaying_a_1_4_session"})
        message = str(result.failures[0][1].value)
        self.assertIn("replaying ", message)
        self.assertIn("    reply to ?set-enable,0,0\n        recorded: !set-enable,ok\n"
                      "        received: !set-enable,invalid,unknown command 'set-enable'\n"
                      "        differs:  code: recorded !set-enable,ok, received "
                      "!set-enable,invalid", message)
        self.assertTrue(message.endswith("19 of 25 replies match, 6 differ"), message)

    def test_replay_needs_a_served_backend(self) -> None:
        with self.assertRaises(RuntimeError) as raised:
            TestSimulatorConforms("test_the_recorded_simulator_session_replays").replay(
                RECORDED_SESSION)
        self.assertIn("once setUp has served the backend", str(raised.exception))

    def test_the_base_class_alone_is_skipped_with_a_reason(self) -> None:
        for case in (BackendTestCase, NothingConfigured):
            result = run_case(case)
            self.assertEqual((result.successes, result.failures, result.errors), (0, [], []))
            self.assertEqual(len(result.skips), len(CHECKS))
            self.assertIn("override make_backend() or set address", str(result.skips[0][1]))

    def test_pytest_does_not_collect_the_base_class_but_collects_subclasses(self) -> None:
        self.assertIs(BackendTestCase.__dict__["__test__"], False)
        self.assertIs(TestSimulatorConforms.__test__, True)
        self.assertIs(TwoValueStatusCase.__test__, False)

    def test_an_unknown_name_in_skip_checks_is_refused_at_once(self) -> None:
        with self.assertRaises(ValueError) as raised:
            type("Typo", (BackendTestCase,), {"skip_checks": ("no_such_check",)})
        self.assertIn("no_such_check", str(raised.exception))

    def test_there_is_one_test_per_check_named_after_it(self) -> None:
        tests = {name for name in dir(BackendTestCase) if name.startswith("test_")}
        self.assertEqual(tests, {f"test_{name}" for name in CHECK_NAMES})
        self.assertEqual(len(CHECK_NAMES), len(set(CHECK_NAMES)))
        check = CHECKS[0]
        method = getattr(BackendTestCase, f"test_{check.name}")
        self.assertEqual(method.__doc__, check.sentence)

    def test_checks_are_selected_by_name_and_mode(self) -> None:
        selected = select_checks(only=["an_unknown_command_is_invalid",
                                       "test_stop_while_idle_fails"],
                                 skip=["stop_while_idle_fails"])
        self.assertEqual([(check.name, reason) for check, reason in selected],
                         [("an_unknown_command_is_invalid", None),
                          ("stop_while_idle_fails", "by name")])
        read_only = select_checks(read_only=True)
        self.assertEqual({check.name for check, reason in read_only if reason}, STATE_CHANGING)
        with self.assertRaises(ValueError) as raised:
            select_checks(skip=["nope"])
        self.assertIn("unknown check 'nope'", str(raised.exception))
        self.assertEqual(check_named("test_stop_while_idle_fails").name, "stop_while_idle_fails")


class TheRunnerAndTheSession(SynchronousTestCase):
    """run_checks, run_check and the session, against live loopback servers."""

    def setUp(self) -> None:
        port = wait_for(server.listen(0, DBProtocolHandler(BackendSimulator()),
                                      interface="127.0.0.1"))
        self.addCleanup(lambda: wait_for(server.stop(port)))
        self.address = Address(host="127.0.0.1", port=port.getHost().port)

    def test_run_checks_reports_each_result_as_it_comes(self) -> None:
        seen: list[Any] = []
        checks = select_checks(only=["an_unknown_command_is_invalid", "stop_while_idle_fails"],
                               read_only=True)
        results = wait_for(run_checks(self.address, checks=checks, progress=seen.append))
        self.assertEqual(seen, results)
        self.assertEqual([result.outcome for result in results], [PASSED, SKIPPED])
        self.assertGreater(results[0].seconds, 0)

    def test_a_broken_check_is_an_error_not_a_failure(self) -> None:
        async def broken(session: Any) -> None:
            raise ZeroDivisionError("oops")

        async def refuses(session: Any) -> None:
            raise CheckFailed("?x", "!x,ok", "!x,fail")
        checks = [(Check("broken", "Breaks.", False, broken), None),
                  (Check("refuses", "Fails.", False, refuses), None)]
        results = wait_for(run_checks(self.address, checks=checks))
        self.assertEqual([result.outcome for result in results], [ERROR, FAILED])
        self.assertEqual(results[0].reason, "ZeroDivisionError: oops")
        self.assertEqual(results[1].failure.expected, "!x,fail")

    def test_a_read_only_check_cannot_send_a_state_changing_command(self) -> None:
        async def sneaky(session: Any) -> None:
            await session.request("status")
            await session.exchange(b"not a request")
            await session.request("start")
        results = wait_for(run_checks(self.address, checks=[
            (Check("sneaky", "Starts.", False, sneaky), None)]))
        self.assertEqual(results[0].outcome, ERROR)
        self.assertIn("StateChangeRefused: start changes the backend's state", results[0].reason)
        self.assertTrue(issubclass(StateChangeRefused, RuntimeError))

    def test_an_unreachable_server_is_cannot_connect(self) -> None:
        closed = Address(host="127.0.0.1", port=1)
        with self.assertRaises(CannotConnect) as raised:
            wait_for(run_checks(closed, checks=select_checks(only=["stop_while_idle_fails"])))
        self.assertIn("cannot connect to 127.0.0.1:1", str(raised.exception))
        with self.assertRaises(CannotConnect):
            wait_for(connect("no-such-host.invalid", 8978))

    def test_addresses_are_endpoint_strings_names_or_literals(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint

        from discosbackend.testing.session import _endpoint
        session = wait_for(connect(f"tcp:host=127.0.0.1:port={self.address.port}"))
        wait_for(session.close())
        self.assertEqual(session.where, f"tcp:host=127.0.0.1:port={self.address.port}")
        self.assertIsInstance(_endpoint(Address(host="::1", port=1), reactor, 1),
                              TCP6ClientEndpoint)
        self.assertIsInstance(_endpoint(Address(host="localhost", port=1), reactor, 1),
                              (TCP4ClientEndpoint, TCP6ClientEndpoint))

    def test_a_server_lost_after_the_first_check_fails_the_rest(self) -> None:
        port = wait_for(server.listen(0, DBProtocolHandler(BackendSimulator()),
                                      interface="127.0.0.1"))

        async def first(session: Any) -> None:
            await server.stop(port)
        checks = [(Check("first", "Stops the server.", False, first), None),
                  (check_named("an_unknown_command_is_invalid"), None)]
        results = wait_for(run_checks(("127.0.0.1", port.getHost().port), checks=checks))
        self.assertEqual([result.outcome for result in results], [PASSED, FAILED])
        self.assertEqual(results[1].failure.sent, "(connecting)")

    def test_a_session_refuses_commands_the_servers_version_lacks(self) -> None:
        port = wait_for(server.listen(0, DBProtocolHandler(BackendSimulator(), protocol="1.3"),
                                      interface="127.0.0.1"))
        self.addCleanup(lambda: wait_for(server.stop(port)))
        session = wait_for(connect("127.0.0.1", port.getHost().port))
        self.addCleanup(lambda: wait_for(session.close()))
        self.assertEqual(session.server_version, "1.3")
        with self.assertRaises(NotInServerVersion) as raised:
            session.send([b"?status", b"?end-schedule"])
        self.assertEqual(str(raised.exception), "the server speaks protocol 1.3, which has no "
                                                "end-schedule (from 1.4)")
        session.within_server_version = False
        self.assertEqual(wait_for(session.exchange(b"?end-schedule")),
                         b"!end-schedule,invalid,unknown command 'end-schedule'\r\n")
        session.write(b"?time")
        session.write(b"\n")
        self.assertTrue(wait_for(session.receive(b"?time")).startswith(b"!time,ok,"))

    def test_run_check_connects_runs_and_disconnects(self) -> None:
        wait_for(run_check(check_named("status_reply_has_a_timestamp_a_word_and_a_flag"),
                           ("127.0.0.1", self.address.port)))

    def test_exchanges_keep_the_terminator(self) -> None:
        session = wait_for(connect(str(self.address)))
        try:
            self.assertEqual(session.greeting, b"!version,ok,1.4\r\n")
            self.assertEqual(wait_for(session.exchange("?version")), session.greeting)
            replies = wait_for(session.exchange_all([b"?get-rms,1\n", b"?no-such-command"]))
            self.assertTrue(replies[0].startswith(b"!get-rms,fail,"))
            self.assertTrue(replies[1].startswith(b"!no-such-command,invalid,"))
            self.assertTrue(replies[1].endswith(b"\r\n"))
        finally:
            wait_for(session.close())
        self.assertIsNone(wait_for(session.close()))
        with self.assertRaises(CheckFailed) as raised:
            wait_for(session.exchange(b"?status"))
        self.assertEqual(raised.exception.received, "the connection closed (Connection was "
                                                    "closed cleanly.)")


class Misbehaving(Handler):
    """Answers never (``silent``), garbage, another command's reply, or a cut line."""

    def handle(self, message: Message) -> Any:
        answers = {
            "silent": defer.Deferred(),
            "garble": RawReply(b"this is no reply\r\n"),
            "wrong": RawReply(b"!status,ok\r\n"),
            "long": RawReply(b"x" * (1024 * 1024 + 10)),
            "cut": RawReply(b"!cut,ok", close_after=True),
        }
        return answers.get(message.name) or ok(message.name)


class SilentGreeting(Misbehaving):
    def handle(self, message: Message) -> Any:
        return defer.Deferred() if message.name == "version" else super().handle(message)


class TheSessionBoundsEveryWait(SynchronousTestCase):
    """A server that misbehaves fails the check; it never hangs it."""

    def serve(self, handler: Handler) -> Any:
        port = wait_for(server.listen(0, handler, interface="127.0.0.1"))
        self.addCleanup(lambda: wait_for(server.stop(port)))
        session = wait_for(connect("127.0.0.1", port.getHost().port,
                                   settings=Settings(timeout=0.2, greeting_timeout=0.1)))
        self.addCleanup(lambda: wait_for(session.close()))
        return session

    def test_no_greeting_is_none_and_no_reply_is_a_failure(self) -> None:
        session = self.serve(SilentGreeting())
        self.assertIsNone(session.greeting)
        with self.assertRaises(CheckFailed) as raised:
            wait_for(session.exchange(b"?silent"))
        self.assertEqual((raised.exception.sent, raised.exception.received,
                          raised.exception.expected),
                         ("?silent", "nothing within 0.2 s", "one reply line"))

    def test_a_reply_that_does_not_parse_or_names_another_command_fails(self) -> None:
        session = self.serve(Misbehaving())
        with self.assertRaises(CheckFailed) as raised:
            wait_for(session.request("garble"))
        self.assertIn("it does not parse", raised.exception.expected)
        with self.assertRaises(CheckFailed) as raised:
            wait_for(session.request("wrong"))
        self.assertEqual(raised.exception.received, "!status,ok")
        self.assertEqual(raised.exception.expected, "a reply !wrong,<code>...")

    def test_an_endless_line_is_handed_over_and_a_cut_line_shown(self) -> None:
        session = self.serve(Misbehaving())
        self.assertEqual(len(wait_for(session.exchange(b"?long"))), 1024 * 1024 + 10)
        self.assertEqual(wait_for(session.exchange(b"?cut")), b"!cut,ok")


def now_stamp() -> str:
    return f"{time.time():.7f}"


class EachCheckCatchesItsFault(SynchronousTestCase):
    """A server breaking one behaviour fails the checks about it, with a reason."""

    def failures(self, server_of: Any, names: list[str], **settings: Any) -> dict[str, str]:
        """Serve a Handler or a raw factory, run the named checks: failures by name."""
        if isinstance(server_of, Handler):
            port = wait_for(server.listen(0, server_of, interface="127.0.0.1"))
            self.addCleanup(lambda: wait_for(server.stop(port)))
        else:
            port = listen_raw(server_of)
            self.addCleanup(lambda: wait_for(stop_raw(port)))
        results = wait_for(run_checks(("127.0.0.1", port.getHost().port),
                                      settings=Settings(**settings),
                                      checks=select_checks(only=names)))
        self.assertNotIn(ERROR, [result.outcome for result in results])
        return {result.check.name: str(result.failure) for result in results
                if result.outcome == FAILED}

    def assert_fails(self, failures: dict[str, str], expected: dict[str, str]) -> None:
        self.assertEqual(set(failures), set(expected))
        for name, text in expected.items():
            self.assertIn(text, failures[name])

    def test_status_timestamp_as_acs_ticks(self) -> None:
        ticks = Scripted(status=lambda: b"!status,ok,%d,ok,0\r\n"
                         % int(time.time() * TICKS_PER_SECOND))
        self.assert_fails(self.failures(ticks, [STATUS]),
                          {STATUS: "unix seconds with exactly 7 decimals"})

    def test_status_timestamp_far_from_now(self) -> None:
        late = Scripted(status=b"!status,ok,1000000000.0000000,ok,0\r\n")
        self.assert_fails(self.failures(late, [STATUS], time_tolerance=5),
                          {STATUS: "within 5 s of our clock"})

    def test_status_word_and_flag(self) -> None:
        for reply, reason in (("not ok,0", "status: one word, not 'not ok'"),
                              ("ok,yes", "acquiring: 1 or 0, not 'yes'")):
            wrong = Scripted(status=lambda reply=reply: f"!status,ok,{now_stamp()},{reply}\r\n"
                             .encode())
            self.assert_fails(self.failures(wrong, [STATUS]), {STATUS: reason})

    def test_per_section_values_not_numbers_or_not_matching(self) -> None:
        wrong = Scripted(get_tpi=b"!get-tpi,ok,1.5,nan\r\n", get_tp0=b"!get-tp0,ok,1,2,3\r\n",
                         get_rms=b"!get-rms,ok,1,2\r\n")
        self.assert_fails(self.failures(wrong, ["get_tpi_replies_one_float_per_section",
                                                "get_tp0_replies_one_float_per_section",
                                                "get_rms_replies_one_float_per_section"]),
                          {"get_tpi_replies_one_float_per_section": "value: a finite number, not 'nan'",
                           "get_tp0_replies_one_float_per_section": "the same number of values"})

    def test_integration_that_is_negative(self) -> None:
        wrong = Scripted(get_integration=b"!get-integration,ok,-5\r\n")
        self.assert_fails(self.failures(wrong, ["get_integration_replies_milliseconds"]),
                          {"get_integration_replies_milliseconds": "one integer >= 0"})

    def test_integration_that_is_not_an_integer(self) -> None:
        wrong = Scripted(get_integration=b"!get-integration,ok,forty\r\n")
        self.assert_fails(self.failures(wrong, ["get_integration_replies_milliseconds",
                                                "set_integration_round_trips"]),
                          {"get_integration_replies_milliseconds": "integration: an integer, not 'forty'",
                           "set_integration_round_trips": "!get-integration,ok,40, as set"})

    def test_round_trips_leave_the_backend_as_they_found_it(self) -> None:
        simulator = BackendSimulator()
        simulator.set_configuration("SP00")
        simulator.set_integration(10)
        self.assertEqual(self.failures(DBProtocolHandler(simulator),
                                       ["set_configuration_round_trips",
                                        "set_integration_round_trips",
                                        "get_tpi_and_get_rms_follow_the_configuration"],
                                       configuration="SK77"), {})
        self.assertEqual((simulator.configuration, simulator.integration), ("SP00", 10))

    def test_garbage_in_reply_to_stop(self) -> None:
        garbage = Scripted(stop=b"garbage\r\n")
        self.assert_fails(self.failures(garbage, ["stop_while_idle_fails"]),
                          {"stop_while_idle_fails": "it does not parse"})

    def test_errors_answered_fail_instead_of_invalid(self) -> None:
        names = ["an_unknown_command_is_invalid", "a_line_that_breaks_the_grammar_is_invalid",
                 "a_line_starting_with_bang_is_invalid", "extra_arguments_are_refused_with_fail"]
        failing_all = RewritingFactory(lambda data: data.replace(b",invalid,", b",fail,"))
        self.assert_fails(self.failures(failing_all, names),
                          {name: ",invalid,<reason>" for name in names[:3]})

    def test_greeting_that_is_not_the_version_reply(self) -> None:
        other = RewritingFactory(greeting=lambda data: data.replace(b",1.4", b",1.3"))
        self.assert_fails(self.failures(other, ["greeting_is_the_version_reply_ending_in_cr_lf",
                                                "version_reply_matches_the_greeting"]),
                          {"version_reply_matches_the_greeting":
                           "!version,ok,1.3, the greeting, byte for byte"})

    def test_one_line_answered_twice(self) -> None:
        for prefix in (b"!undefined,invalid,", b"!version,fail,"):
            self.assert_fails(self.failures(doubling_factory(prefix),
                                            ["each_line_gets_exactly_one_reply_in_order"]),
                              {"each_line_gets_exactly_one_reply_in_order": "one reply per line"
                               if prefix.startswith(b"!undefined") else "nothing more"})

    def test_unparseable_replies_to_junk(self) -> None:
        junk = RewritingFactory(lambda data: data.replace(b"!undefined,", b"undefined,"))
        self.assert_fails(self.failures(junk, ["each_line_gets_exactly_one_reply_in_order",
                                               "a_line_that_breaks_the_grammar_is_invalid"]),
                          {"each_line_gets_exactly_one_reply_in_order": "received: !status,ok,",
                           "a_line_that_breaks_the_grammar_is_invalid": "received: undefined,"})

    def test_a_time_tagged_start_that_starts_at_once(self) -> None:
        eager = DBProtocolHandler(EagerStart())
        self.assert_fails(self.failures(eager, ["time_tagged_start_and_stop_happen_on_time"]),
                          {"time_tagged_start_and_stop_happen_on_time":
                           "acquiring 0 until "})

    def test_a_start_that_does_nothing(self) -> None:
        deaf = DBProtocolHandler(DeafStart())
        self.assert_fails(self.failures(deaf, ["start_and_stop_toggle_the_acquiring_flag",
                                               "time_tagged_start_and_stop_happen_on_time",
                                               "start_while_acquiring_fails",
                                               "stop_while_idle_fails"],
                                        timed_delay=0.05, timed_lateness=0.2),
                          {"start_and_stop_toggle_the_acquiring_flag": "with acquiring 1",
                           "time_tagged_start_and_stop_happen_on_time":
                               "0.2 s after the time sent",
                           "start_while_acquiring_fails": "!start,fail,<reason>"})

    def test_an_empty_line_is_a_lost_connection_to_discos(self) -> None:
        self.assert_fails(self.failures(blank_line_factory(), ["no_reply_is_an_empty_line"]),
                          {"no_reply_is_an_empty_line":
                           "received: (empty line)\nexpected: a reply !time,<code>...\n"
                           f"why:      {EMPTY_LINE_REASON}"})

    def test_a_fail_to_any_of_the_four_aborts_discos_and_other_fails_do_not(self) -> None:
        names = ["set_shift_is_accepted", "cal_on_accepts_an_interleave_and_none",
                 "set_integration_round_trips", "set_enable_is_accepted", "convert_data_is_accepted"]
        refusing = Scripted(set_shift=b"!set-shift,fail,busy\r\n",
                            cal_on=b"!cal-on,fail,busy\r\n",
                            set_integration=b"!set-integration,fail,busy\r\n",
                            set_enable=b"!set-enable,ok\r\n",
                            convert_data=b"!convert-data,fail,busy\r\n")
        port = wait_for(server.listen(0, refusing, interface="127.0.0.1"))
        self.addCleanup(lambda: wait_for(server.stop(port)))
        results = wait_for(run_checks(("127.0.0.1", port.getHost().port),
                                      checks=select_checks(only=names)))
        outcomes = {result.check.name: result.outcome for result in results}
        self.assertEqual(outcomes, {"set_integration_round_trips": ABORTS,
                                    "cal_on_accepts_an_interleave_and_none": ABORTS,
                                    "set_enable_is_accepted": PASSED,
                                    "set_shift_is_accepted": ABORTS,
                                    "convert_data_is_accepted": FAILED})
        shift = next(result.failure for result in results
                     if result.check.name == "set_shift_is_accepted")
        self.assertIsInstance(shift, DiscosAborts)
        self.assertIn("why:      DISCOS aborts on this: the real DISCOS client does not handle "
                      "a fail to set-shift", str(shift))

    def test_counts_without_a_table_entry_compare_get_rms_with_get_tpi(self) -> None:
        short_rms = Scripted(BackendSimulator(configurations=XK_TABLE),
                             get_rms=b"!get-rms,ok,1.5\r\n")
        self.assert_fails(self.failures(short_rms, [COUNT], configuration="XK77"),
                          {COUNT: "expected: !get-rms,ok,<value>...: 4 values, one per input "
                                  "of XK77"})
        self.assertEqual(self.failures(DBProtocolHandler(BackendSimulator(
            configurations=XK_TABLE)), [COUNT], configuration="XK77"), {})

    def test_a_clock_that_cannot_be_read(self) -> None:
        no_time = Scripted(time=b"!time,ok\r\n")
        self.assert_fails(self.failures(no_time, ["time_reply_is_a_timestamp_near_now",
                                                  "time_tagged_start_and_stop_happen_on_time"]),
                          {"time_reply_is_a_timestamp_near_now": "1 value (timestamp), not 0",
                           "time_tagged_start_and_stop_happen_on_time": "!time,ok,<timestamp>"})


class TheReportShowsLines(SynchronousTestCase):
    """How lines appear in failure reports."""

    def test_cr_lf_is_left_off_and_other_controls_are_visible(self) -> None:
        self.assertEqual(show(b"!status,ok\r\n"), "!status,ok")
        self.assertEqual(show(b"!status,ok\n"), "!status,ok\\n")
        self.assertEqual(show(b"a\tb\rc\x00\xff"), "a\\tb\\rc\\x00\\xff")
        self.assertEqual(show(b"\r\n"), "(empty line)")
        self.assertEqual(show("x" * 300), "x" * 200 + "...")
        self.assertEqual(show_lines([b"?a", ""]), "?a | (empty line)")

    def test_a_check_failure_reads_sent_received_expected(self) -> None:
        failure = CheckFailed("?status", "!status,ok", "!status,ok,<timestamp>")
        self.assertIsInstance(failure, AssertionError)
        self.assertEqual(str(failure), "sent:     ?status\nreceived: !status,ok\n"
                                       "expected: !status,ok,<timestamp>")


def test_a_user_module_passes_under_twisted_trial(tmp_path: Path) -> None:
    """What the README shows, run the way a C++ or Python author would run it."""
    (tmp_path / "test_my_backend.py").write_text(textwrap.dedent("""\
        from discosbackend.simulator import BackendSimulator
        from discosbackend.testing import BackendTestCase


        class MyBackendConforms(BackendTestCase):
            configuration = "SK00"

            def make_backend(self):
                return BackendSimulator(sections=2)
        """))
    done = subprocess.run([sys.executable, "-m", "twisted.trial", "test_my_backend"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=_env(tmp_path), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"PASSED (skips={len(CHECKS)}, successes={len(CHECKS)})" in done.stdout


def test_a_user_module_passes_under_unittest(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(textwrap.dedent("""\
        from discosbackend.simulator import BackendSimulator
        from discosbackend.testing import BackendTestCase


        class MineConforms(BackendTestCase):
            read_only = True

            def make_backend(self):
                return BackendSimulator()
        """))
    done = subprocess.run([sys.executable, "-m", "unittest", "test_mine.MineConforms"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=_env(tmp_path), check=False)
    assert done.returncode == 0, done.stderr
    assert f"OK (skipped={len(STATE_CHANGING)})" in done.stderr


FAILING_MODULE = """\
from discosbackend.simulator import BackendSimulator
from discosbackend.testing import BackendTestCase


class TwoValues(BackendSimulator):
    def status(self):
        return self.time(), "ok"


class MineConforms(BackendTestCase):
    def make_backend(self):
        return TwoValues()
"""
FAILING_TEST = "test_status_reply_has_a_timestamp_a_word_and_a_flag"


def test_a_failure_shows_what_was_sent_and_received_not_the_library(tmp_path: Path) -> None:
    (tmp_path / "test_failing.py").write_text(FAILING_MODULE)
    test_id = f"test_failing.MineConforms.{FAILING_TEST}"
    commands = {
        "pytest": [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                   f"test_failing.py::MineConforms::{FAILING_TEST}"],
        "trial": [sys.executable, "-m", "twisted.trial", test_id],
        "unittest": [sys.executable, "-m", "unittest", test_id],
    }
    running = {name: subprocess.Popen(command, cwd=tmp_path, env=_env(tmp_path), text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for name, command in commands.items()}
    outputs = {name: process.communicate(timeout=120)[0] for name, process in running.items()}
    sent = "sent:     ?status"
    received = "received: !status,fail,backend returned 2 values for status"
    for name, output in outputs.items():
        assert running[name].poll() != 0, output
        assert sent in output and received in output, output
        library = [line for line in output.splitlines() if 'File "' in line
                   and "discosbackend" in line and not line.strip().endswith(", in test")]
        # Only the test's own two frames at most (trial shows them), never the
        # runner's, the checks' or the session's that ran the exchange.
        for line in library:
            assert "testing/case.py" in line, output
        assert not any(word in output for word in ("runner.py", "checks.py", "session.py",
                                                   "defer.py")), output
    # pytest: the failure's first line is what was sent.
    lines = outputs["pytest"].splitlines()
    header = next(i for i, line in enumerate(lines) if FAILING_TEST in line and "___" in line)
    following = [line for line in lines[header + 1:] if line.strip()]
    assert following[0] == f"E   AssertionError: {sent}", outputs["pytest"]
    assert "case.py" not in outputs["pytest"]
    # unittest: none of the library's frames.
    assert "discosbackend" not in outputs["unittest"]


def _env(path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(path)}


def test_waiting_inside_the_running_reactor_is_refused() -> None:
    """pytest-twisted runs plain test functions in the reactor: no blocking there."""
    from twisted.internet import reactor
    assert wait_for(defer.succeed(3)) == 3
    if not reactor.running:
        return  # plain pytest: nothing runs inside the reactor
    with pytest.raises(RuntimeError, match="cannot wait inside a running reactor"):
        wait_for(defer.Deferred())
