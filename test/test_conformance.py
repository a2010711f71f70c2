"""The protocol's rules about wire lines, as the checks, the proxy and the replay apply them."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from discosbackend.commands import COMMANDS, FLOAT, INTEGER, TEXT, Command, ReplyValue, command
from discosbackend.conformance import (FATAL_FAILS, REAL_CLIENT_BUFFER, Conversation,
                                       LineBuffer, framing_problem, is_version_reply,
                                       ok_values_problem, parse_raw, request_problems, show,
                                       show_lines, value_problem, version_of)

STATUS = COMMANDS["status"]


def greeted(version: bytes = b"1.4") -> Conversation:
    conversation = Conversation()
    assert conversation.reply(b"!version,ok," + version + b"\r\n") == (None, [])
    return conversation


def exchange(request: bytes, reply: bytes, version: bytes = b"1.4") -> list[str]:
    """The problems of ``reply`` to ``request`` on a greeted connection."""
    conversation = greeted(version)
    conversation.request(request)
    answered, problems = conversation.reply(reply)
    assert answered == request
    return problems


# --------------------------------------------------------------------------
# One rule each
# --------------------------------------------------------------------------

def test_framing_wants_one_cr_lf_at_the_end() -> None:
    assert framing_problem(b"!status,ok\r\n") is None
    assert "bare LF" in framing_problem(b"!status,ok\n")
    assert "CR before its end" in framing_problem(b"!status\r,ok\r\n")
    assert "no line end" in framing_problem(b"!status,ok")


def test_a_reply_value_is_judged_by_its_kind_and_timestamps_by_the_reply_form() -> None:
    stamp = STATUS.reply[0]
    assert value_problem(stamp, "1430922782.9708830") is None
    assert value_problem(stamp, "14309227829708830") == (
        "timestamp: unix seconds with exactly 7 decimals, not '14309227829708830'")
    assert value_problem(STATUS.reply[2], "yes") == "acquiring: 1 or 0, not 'yes'"
    assert value_problem(ReplyValue("value", TEXT), "") == "value: a non-empty text, not ''"
    assert value_problem(STATUS.reply[1], "a b" * 20) == (
        f"status: one word, not '{('a b' * 20)[:40]}...'")


def test_ok_values_must_fit_the_table() -> None:
    assert ok_values_problem(STATUS, ["1430922782.9708830", "ok", "0"]) is None
    assert ok_values_problem(STATUS, ["1430922782.9708830", "ok"]) == (
        "3 values (timestamp status acquiring), not 2")
    assert ok_values_problem(COMMANDS["time"], []) == "1 value (timestamp), not 0"
    assert ok_values_problem(COMMANDS["get-tpi"], ["1", "2.5", "1e+06"]) is None
    assert ok_values_problem(COMMANDS["get-tpi"], ["1", "nan"]) == (
        "value: a finite number, not 'nan'")
    assert ok_values_problem(COMMANDS["set-shift"], ["1"]) == "no values, not 1"
    mixed = Command("sweep", "sweep", reply=(ReplyValue("points", INTEGER),
                                             ReplyValue("level", FLOAT, repeated=True)))
    assert ok_values_problem(mixed, []) == "1 or more values (points level...), not 0"
    assert ok_values_problem(mixed, ["3", "1.5", "2"]) is None


def test_requests_the_server_must_refuse() -> None:
    assert request_problems(b"?set-integration,40\r\n") == []
    assert request_problems(b"?status\n") == []  # a bare LF is fine from a client
    assert "does not parse (bad message type" in request_problems(b"hello\r\n")[0]
    assert request_problems(b"!status,ok\r\n") == [
        "starts with '!', not '?': the server answers invalid"]
    assert "unknown command 'bogus'" in request_problems(b"?bogus\r\n")[0]
    assert "bad arguments (set-section needs 7 arguments (got 1))" in request_problems(
        b"?set-section,1\r\n")[0]
    assert request_problems(b"?set-enable,0,0\r\n", "1.3") == []
    assert request_problems(b"?set-enable,0,0\r\n", "1.2") == [
        "unknown command 'set-enable' in protocol 1.2: the server answers invalid (unless it "
        "is one of its extensions)"]


def test_version_of_a_greeting() -> None:
    assert version_of(b"!version,ok,1.2\r\n") == "1.2"
    assert version_of(b"!status,ok\r\n") is None
    assert version_of(None) is None
    assert is_version_reply(parse_raw(b"!version,ok,1.4"))
    assert not is_version_reply(parse_raw(b"!version,ok"))
    assert parse_raw(b"junk") is None


# --------------------------------------------------------------------------
# A conversation: replies paired with requests
# --------------------------------------------------------------------------

def test_a_good_conversation_has_no_problems() -> None:
    conversation = greeted()
    assert conversation.server_version == "1.4"
    assert conversation.greeting == b"!version,ok,1.4\r\n"
    for request in (b"?status\r\n", b"?get-tpi,0,0\r\n", b"?set-section,0,*,*,*,*,*,*\r\n"):
        assert conversation.request(request) == []
    assert conversation.pending == 3
    assert conversation.reply(b"!status,ok,1430922782.9708830,ok,1\r\n") == (b"?status\r\n", [])
    assert conversation.reply(b"!get-tpi,ok,903.21,1240.57\r\n")[1] == []
    assert conversation.reply(b"!set-section,fail,section 9 out of range\r\n")[1] == []
    assert conversation.close() == []


def test_a_greeting_that_is_not_the_version_reply() -> None:
    conversation = Conversation()
    assert conversation.reply(b"!status,ok\n") == (None, [
        "the greeting ends in a bare LF, not CR LF: the real client loses its last character",
        "the greeting is not !version,ok,<version>"])
    assert conversation.server_version is None


def test_a_server_that_does_not_greet() -> None:
    conversation = Conversation()
    conversation.request(b"?get-configuration\r\n")
    answered, problems = conversation.reply(b"!get-configuration,ok,SK00\r\n")
    assert answered == b"?get-configuration\r\n"
    assert problems == ["no greeting: the server's first line answers the first request"]


def test_a_reply_nobody_asked_for_and_requests_left_unanswered() -> None:
    conversation = greeted()
    assert conversation.reply(b"!status,ok,1430922782.9708830,ok,0\r\n") == (None, [
        "a reply when no request waits for one (an extra reply)"])
    conversation.request(b"?status\r\n")
    conversation.request(b"?time\r\n")
    assert conversation.close() == ["the connection closed with 2 requests unanswered"]
    assert conversation.close() == []


@pytest.mark.parametrize("request_line, reply, problem", [
    (b"?status\r\n", b"!status,ok,1430922782.9708830,ok,0\n", "bare LF"),
    (b"?status\r\n", b"!status,ok,1430922782.97,ok,0\r\n",
     "not the table's !status,ok reply: timestamp: unix seconds with exactly 7 decimals, "
     "not '1430922782.97'"),
    (b"?status\r\n", b"!time,ok,1430922782.9708830\r\n",
     "answers 'time', not the request 'status'"),
    (b"?status\r\n", b"status ok\r\n", "does not parse (bad message type 's'"),
    (b"?status\r\n", b"?status\r\n", "a request, not a reply: the real client's parse fails"),
    (b"?get-tpi\r\n", b"!get-tpi,ok," + b"1.5," * 200 + b"1\r\n",
     f"bytes: the real client's {REAL_CLIENT_BUFFER}-byte buffer overflows"),
    (b"?get-configuration\r\n", b"!get-configuration,ok,a\\,b\r\n",
     "holds an escape: the real client does not unescape"),
    (b"?stop\r\n", b"!stop,fail\r\n", "fail without a reason: the real client throws"),
    (b"?bogus\r\n", b"!bogus,fail,no\r\n", "fail to an unknown command: expected "
                                          "!bogus,invalid,<reason>"),
    (b"?status\r\n", b"!status,invalid,no\r\n", "invalid to a known command"),
    (b"?set-integration,x\r\n", b"!set-integration,ok\r\n",
     "ok to a request the server must refuse: bad arguments"),
    (b"hello\r\n", b"!hello,invalid,bad\r\n", "answers a line that is not a request: "
                                              "expected !undefined,invalid,<reason>"),
    (b"?bad\\q\r\n", b"!bad,fail,no\r\n", "expected !undefined,invalid,<reason>"),
    (b"?status,a\\q\r\n", b"!status,fail,no\r\n", "expected !status,invalid,<reason>"),
])
def test_each_broken_reply_is_named(request_line: bytes, reply: bytes, problem: str) -> None:
    assert any(problem in text for text in exchange(request_line, reply)), \
        exchange(request_line, reply)


@pytest.mark.parametrize("request_line, reply", [
    (b"hello\r\n", b"!undefined,invalid,bad message type\r\n"),
    (b"?bad\\q\r\n", b"!undefined,invalid,bad name\r\n"),
    (b"?status,a\\q\r\n", b"!status,invalid,unknown escape\r\n"),
    (b"?status,a\\q\r\n", b"!undefined,invalid,unknown escape\r\n"),
    (b"?bogus\r\n", b"!bogus,invalid,unknown command 'bogus'\r\n"),
    (b"?set-integration,x\r\n", b"!set-integration,fail,invalid integration 'x'\r\n"),
    (b"?stop\r\n", b"!stop,fail,not acquiring\r\n"),
])
def test_refusals_the_protocol_asks_for_are_fine(request_line: bytes, reply: bytes) -> None:
    assert exchange(request_line, reply) == []


def test_a_fail_that_crashes_the_real_client_is_flagged_only_for_valid_requests() -> None:
    assert FATAL_FAILS == {"set-integration", "cal-on", "set-enable", "set-shift"}
    problems = exchange(b"?set-enable,0,0\r\n", b"!set-enable,fail,busy\r\n")
    assert problems == ["fail to set-enable: the real client does not handle it, the DISCOS "
                        "component ends (std::terminate)"]
    assert exchange(b"?cal-on,-1\r\n", b"!cal-on,fail,invalid interleave\r\n") == []


def test_commands_of_a_later_version_may_be_refused_either_way() -> None:
    for reply in (b"!set-enable,invalid,unknown command 'set-enable'\r\n",
                  b"!set-enable,ok\r\n"):
        assert exchange(b"?set-enable,0,0\r\n", reply, version=b"1.2") == []


def test_extension_commands_are_not_judged_by_the_table() -> None:
    @command("target-sweep")
    def sweep(self: object) -> None:  # a backend's own command, unknown to the table
        """Unused."""
    assert sweep.__name__ == "sweep"
    assert exchange(b"?target-sweep\r\n", b"!target-sweep,ok,20,anything\r\n") == []


# --------------------------------------------------------------------------
# Lines as they come, and as they are shown
# --------------------------------------------------------------------------

def test_a_line_buffer_keeps_terminators_and_joins_split_lines() -> None:
    buffer = LineBuffer()
    assert buffer.feed(b"?sta") == []
    assert buffer.feed(b"tus\r\n?time\n?ver") == [b"?status\r\n", b"?time\n"]
    assert buffer.rest() == b"?ver"
    assert buffer.rest() == b""


def test_a_line_buffer_hands_over_an_endless_line() -> None:
    buffer = LineBuffer(limit=8)
    assert buffer.feed(b"0123456789") == [b"0123456789"]
    assert buffer.feed(b"ab\n") == [b"ab\n"]


@given(st.lists(st.binary(max_size=30), max_size=10))
def test_a_line_buffer_loses_and_adds_nothing(chunks: list[bytes]) -> None:
    buffer = LineBuffer()
    lines = [line for chunk in chunks for line in buffer.feed(chunk)]
    assert b"".join(lines) + buffer.rest() == b"".join(chunks)
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)


def test_show_leaves_off_cr_lf_and_shows_other_controls() -> None:
    assert show(b"!status,ok\r\n") == "!status,ok"
    assert show(b"!status,ok\n") == "!status,ok\\n"
    assert show(b"a\tb\rc\x00\xff") == "a\\tb\\rc\\x00\\xff"
    assert show_lines([b"?a", ""]) == "?a | (empty line)"
