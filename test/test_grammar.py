"""Tests for discosbackend.grammar (the sans-IO line grammar, docs/protocol.md section 3)."""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discosbackend import grammar
from discosbackend.grammar import (
    FAIL,
    INVALID,
    OK,
    REPLY,
    REQUEST,
    GrammarException,
    Message,
    escape,
    fail,
    invalid,
    is_valid_name,
    ok,
    parse_line,
    parse_message,
    reply,
    request,
    serialize_line,
)

#: One byte that is not UTF-8, as it arrives decoded with surrogateescape.
SURROGATE = b"\xff".decode("utf-8", "surrogateescape")
assert SURROGATE == "\udcff"

FAST = settings(deadline=None, max_examples=300)
#: Building whole messages is the slow part of a run: fewer of them.
MESSAGES = settings(deadline=None, max_examples=120)


def _parts(message):
    return (message.message_type, message.name, message.code, message.arguments)


# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

@pytest.mark.parametrize("constant, value", [
    pytest.param(REQUEST, "?", id="REQUEST"),
    pytest.param(REPLY, "!", id="REPLY"),
    pytest.param(OK, "ok", id="OK"),
    pytest.param(FAIL, "fail", id="FAIL"),
    pytest.param(INVALID, "invalid", id="INVALID"),
    pytest.param(grammar.SEPARATOR, ",", id="SEPARATOR"),
    pytest.param(grammar.RETURN_CODES, frozenset({"ok", "fail", "invalid"}),
                 id="RETURN_CODES"),
    pytest.param(grammar.UNDEFINED_NAME, "undefined", id="UNDEFINED_NAME"),
])
def test_constants(constant, value):
    assert constant == value


def test_grammar_exception_is_value_error():
    error = GrammarException("bad thing", "status")
    assert isinstance(error, ValueError)
    assert error.reason == "bad thing"
    assert error.name == "status"
    assert str(error) == "bad thing"
    assert GrammarException("bad thing").name is None


# --------------------------------------------------------------------------
# Parsing valid lines
# --------------------------------------------------------------------------

VALID_LINES = [
    # requests: arguments
    pytest.param("?status", ("?", "status", None, []), id="request-no-args"),
    pytest.param("?x,", ("?", "x", None, [""]), id="request-one-empty-arg"),
    pytest.param("?x,,", ("?", "x", None, ["", ""]), id="request-two-empty-args"),
    pytest.param("?x,,,", ("?", "x", None, ["", "", ""]), id="request-three-empty-args"),
    pytest.param("?set-section,0,1500", ("?", "set-section", None, ["0", "1500"]),
                 id="request-many-args"),
    pytest.param("?setSection,0,*,1500.000000,,1,", (
        "?", "setSection", None, ["0", "*", "1500.000000", "", "1", ""]),
        id="request-many-args-some-empty"),
    pytest.param("?start,143092278297088300", ("?", "start", None, ["143092278297088300"]),
                 id="request-one-arg"),
    pytest.param("?x,a b", ("?", "x", None, ["a b"]), id="space-is-plain"),
    pytest.param("?x, a ,b ", ("?", "x", None, [" a ", "b "]), id="spaces-kept"),
    # names
    pytest.param("?get-tpi", ("?", "get-tpi", None, []), id="name-with-dash"),
    pytest.param("?a1", ("?", "a1", None, []), id="name-with-digit"),
    pytest.param("?A-1-b-", ("?", "A-1-b-", None, []), id="name-dash-last"),
    pytest.param("?x", ("?", "x", None, []), id="name-one-letter"),
    pytest.param("?" + "n" * 200, ("?", "n" * 200, None, []), id="name-long"),
    # replies with each code
    pytest.param("!status,ok", ("!", "status", "ok", []), id="reply-ok-no-values"),
    pytest.param("!status,ok,1430922782.9708830,0,1", (
        "!", "status", "ok", ["1430922782.9708830", "0", "1"]), id="reply-ok-values"),
    pytest.param("!status,fail,timeout after 30 s", (
        "!", "status", "fail", ["timeout after 30 s"]), id="reply-fail"),
    pytest.param("!foo,invalid,unknown command 'foo'", (
        "!", "foo", "invalid", ["unknown command 'foo'"]), id="reply-invalid"),
    pytest.param("!status,ok,", ("!", "status", "ok", [""]), id="reply-ok-empty-value"),
    pytest.param("!version,ok,1.4", ("!", "version", "ok", ["1.4"]), id="reply-version"),
    # line terminators
    pytest.param("?status\r\n", ("?", "status", None, []), id="crlf"),
    pytest.param("?status\n", ("?", "status", None, []), id="lf"),
    pytest.param("?status\r", ("?", "status", None, []), id="cr"),
    pytest.param("?x,a,b\r\n", ("?", "x", None, ["a", "b"]), id="crlf-with-args"),
    pytest.param("?x,\r\n", ("?", "x", None, [""]), id="crlf-after-empty-arg"),
    pytest.param("!x,ok\n", ("!", "x", "ok", []), id="reply-lf"),
    pytest.param("?x,a\\,b\r\n", ("?", "x", None, ["a,b"]), id="crlf-with-escape"),
    # escapes
    pytest.param("?x,a\\\\b", ("?", "x", None, ["a\\b"]), id="escaped-backslash"),
    pytest.param("?x,a\\tb", ("?", "x", None, ["a\tb"]), id="escaped-tab"),
    pytest.param("?x,a\\,b", ("?", "x", None, ["a,b"]), id="escaped-comma"),
    pytest.param("?x,\\,", ("?", "x", None, [","]), id="escaped-comma-only"),
    pytest.param("?x,\\\\", ("?", "x", None, ["\\"]), id="escaped-backslash-last"),
    pytest.param("?x,\\\\,", ("?", "x", None, ["\\", ""]), id="escaped-backslash-then-sep"),
    pytest.param("?x,\\\\\\,\\t", ("?", "x", None, ["\\,\t"]), id="escapes-back-to-back"),
    pytest.param("!x,fail,a\\,b", ("!", "x", "fail", ["a,b"]), id="reply-escaped-reason"),
    pytest.param("?echo,a\\,b,c\\\\d,e\\tf", ("?", "echo", None, ["a,b", "c\\d", "e\tf"]),
                 id="issue-example"),
    # plain characters that are not printable
    pytest.param("?x,a\tb", ("?", "x", None, ["a\tb"]), id="literal-tab"),
    pytest.param("?x,\t", ("?", "x", None, ["\t"]), id="literal-tab-only"),
    pytest.param("?x,a\x01b", ("?", "x", None, ["a\x01b"]), id="control-x01"),
    pytest.param("?x,\x7f\x0b\x0c\x85", ("?", "x", None, ["\x7f\x0b\x0c\x85"]),
                 id="control-del-vt-ff-nel"),
    pytest.param("?x,\u2028", ("?", "x", None, ["\u2028"]), id="line-separator-u2028"),
    # non-ASCII
    pytest.param("?x,città,Ωμέγα", ("?", "x", None, ["città", "Ωμέγα"]), id="non-ascii"),
    pytest.param("?x,/dati/😀.fits", ("?", "x", None, ["/dati/😀.fits"]), id="astral"),
    pytest.param("?x," + SURROGATE, ("?", "x", None, [SURROGATE]), id="surrogate-escape"),
    pytest.param("?x,a" + SURROGATE + "\\,b", ("?", "x", None, ["a" + SURROGATE + ",b"]),
                 id="surrogate-escape-with-escape"),
    pytest.param("!x,ok," + SURROGATE + "\r\n", ("!", "x", "ok", [SURROGATE]),
                 id="reply-surrogate-crlf"),
]


@pytest.mark.parametrize("line, expected", VALID_LINES)
def test_parse_valid(line, expected):
    message = parse_message(line)
    assert isinstance(message, Message)
    assert _parts(message) == expected
    # The fresh parse is independent of earlier ones (no shared lists).
    assert _parts(parse_message(line)) == expected


@pytest.mark.parametrize("line, expected", VALID_LINES)
def test_parse_valid_round_trips(line, expected):
    message = parse_message(line)
    again = parse_message(str(message))
    assert again == message
    assert _parts(again) == expected
    assert "\r" not in str(message) and "\n" not in str(message)


def test_parse_twice_gives_separate_argument_lists():
    first = parse_message("?cached-head,a")
    second = parse_message("?cached-head,a")
    first.arguments.append("b")
    assert second.arguments == ["a"]


def test_issue_example():
    line = "?echo,a\\,b,c\\\\d,e\\tf"
    assert line == r"?echo,a\,b,c\\d,e\tf"
    message = parse_message(line)
    assert message.arguments == ["a,b", "c\\d", "e\tf"]
    assert str(message) == line


@pytest.mark.parametrize("line, text", [
    pytest.param("?status\r\n", "?status", id="crlf-dropped"),
    pytest.param("?x,a\tb", "?x,a\\tb", id="literal-tab-escaped"),
    pytest.param("?x,\\\\", "?x,\\\\", id="backslash"),
    pytest.param("?x,a b,c", "?x,a b,c", id="plain"),
    pytest.param("?x,a\x01b", "?x,a\x01b", id="control-x01-plain"),
    pytest.param("!x,ok\n", "!x,ok", id="reply-lf-dropped"),
])
def test_parse_then_str(line, text):
    assert str(parse_message(line)) == text


# --------------------------------------------------------------------------
# Parsing invalid lines
# --------------------------------------------------------------------------

INVALID_LINES = [
    pytest.param("", "empty line", None, id="empty"),
    pytest.param("\r\n", "empty line", None, id="bare-crlf"),
    pytest.param("\n", "empty line", None, id="bare-lf"),
    pytest.param("\r", "empty line", None, id="bare-cr"),
    # type
    pytest.param("status", "bad message type", None, id="no-type"),
    pytest.param("#status", "bad message type", None, id="hash-type"),
    pytest.param(" ?status", "bad message type", None, id="leading-space"),
    pytest.param(",status", "bad message type", None, id="leading-comma"),
    pytest.param("\\?status", "bad message type", None, id="leading-backslash"),
    pytest.param("\x00?status", "bad message type", None, id="leading-nul"),
    pytest.param("\n\n", "bad message type", None, id="two-lfs"),
    # name
    pytest.param("?", "missing name", None, id="request-no-name"),
    pytest.param("!", "missing name", None, id="reply-no-name"),
    pytest.param("?,a", "missing name", None, id="request-no-name-with-arg"),
    pytest.param("?\r\n", "missing name", None, id="request-no-name-crlf"),
    pytest.param("?1status", "bad name", None, id="name-digit-first"),
    pytest.param("?-status", "bad name", None, id="name-dash-first"),
    pytest.param("?get_tpi", "bad name", None, id="name-underscore"),
    pytest.param("?get tpi", "bad name", None, id="name-space"),
    pytest.param("?status ,a", "bad name", None, id="name-trailing-space"),
    pytest.param("?città", "bad name", None, id="name-non-ascii"),
    pytest.param("?Ω", "bad name", None, id="name-greek"),
    pytest.param("?x\\,a", "bad name", None, id="name-backslash"),
    pytest.param("?x\ty", "bad name", None, id="name-tab"),
    pytest.param("?st\x00atus", "bad name", None, id="name-nul"),
    pytest.param("?st\x1batus,a", "bad name", None, id="name-esc"),
    pytest.param("?st\ratus", "bad name", None, id="name-cr"),
    pytest.param("?st\natus,a", "bad name", None, id="name-lf"),
    pytest.param("?status\r\r\n", "bad name", None, id="name-second-cr"),
    pytest.param("?" + "a" * 50 + "_", "bad name", None, id="name-long-bad"),
    # reply codes
    pytest.param("!status", "missing return code", "status", id="reply-no-code"),
    pytest.param("!status\r\n", "missing return code", "status", id="reply-no-code-crlf"),
    pytest.param("!status,", "bad return code", "status", id="reply-empty-code"),
    pytest.param("!status,maybe", "bad return code", "status", id="reply-code-maybe"),
    pytest.param("!status,OK", "bad return code", "status", id="reply-code-upper"),
    pytest.param("!status, ok", "bad return code", "status", id="reply-code-space"),
    pytest.param("!status,ok ", "bad return code", "status", id="reply-code-trailing-space"),
    pytest.param("!status,o\\,k", "bad return code", "status", id="reply-code-escaped"),
    pytest.param("!status,\\q", "unknown escape", "status", id="reply-code-bad-escape"),
    # escapes
    pytest.param("?x,\\q", "unknown escape", "x", id="unknown-escape"),
    pytest.param("?x,a,b\\nc", "unknown escape", "x", id="unknown-escape-n"),
    pytest.param("?x,\\T", "unknown escape", "x", id="unknown-escape-upper-t"),
    pytest.param("?x,\\ ", "unknown escape", "x", id="escape-space"),
    pytest.param("!x,ok,\\x41", "unknown escape", "x", id="reply-unknown-escape"),
    pytest.param("?x,\\", "lone backslash", "x", id="lone-backslash"),
    pytest.param("?x,a\\", "lone backslash", "x", id="trailing-lone-backslash"),
    pytest.param("?x,a\\\\\\", "lone backslash", "x", id="odd-backslashes"),
    pytest.param("?x,a\\\r\n", "lone backslash", "x", id="lone-backslash-crlf"),
    pytest.param("!x,ok,\\", "lone backslash", "x", id="reply-lone-backslash"),
    # control characters in an argument
    pytest.param("?x,a\x00b", "control character NUL", "x", id="arg-nul"),
    pytest.param("?x,a\x1bb", "control character ESC", "x", id="arg-esc"),
    pytest.param("?x,a\rb", "control character CR", "x", id="arg-cr"),
    pytest.param("?x,a\nb", "control character LF", "x", id="arg-lf"),
    pytest.param("?x,a,\x00", "in argument 2", "x", id="arg-nul-position"),
    pytest.param("?x,a\n\r", "control character LF", "x", id="lf-then-cr"),
    pytest.param("?x,a\n\n", "control character LF", "x", id="two-trailing-lfs"),
    pytest.param("?x,a\r\r\n", "control character CR", "x", id="second-cr-before-lf"),
    pytest.param("?x,a\r\n\r\n", "control character", "x", id="two-crlfs"),
    pytest.param("!x,ok,a\x1b[0m", "control character ESC", "x", id="reply-ansi-escape"),
    pytest.param("!x,\x00", "control character NUL", "x", id="reply-code-nul"),
]


@pytest.mark.parametrize("line, reason, name", INVALID_LINES)
def test_parse_invalid(line, reason, name):
    with pytest.raises(GrammarException) as info:
        parse_message(line)
    assert reason in info.value.reason
    assert info.value.name == name
    assert str(info.value) == info.value.reason
    assert "\r" not in info.value.reason and "\n" not in info.value.reason


@pytest.mark.parametrize("line, reason, name", INVALID_LINES)
def test_parse_line_invalid(line, reason, name):
    with pytest.raises(GrammarException) as info:
        parse_line(line.encode("utf-8"))
    assert reason in info.value.reason
    assert info.value.name == name


@pytest.mark.parametrize("line", [
    pytest.param("", id="empty"),
    pytest.param("status", id="bad-type"),
    pytest.param("?", id="missing-name"),
    pytest.param("?1x", id="bad-name"),
    pytest.param("!status", id="missing-code"),
    pytest.param("!status,maybe", id="bad-code"),
    pytest.param("?x,a\\", id="lone-backslash"),
    pytest.param("?x,a\x00", id="control"),
    pytest.param("?x\\q", id="bad-name-with-backslash"),
    pytest.param("?x,\\q", id="unknown-escape"),
    pytest.param("!x,ok,\\x41", id="reply-unknown-escape"),
])
def test_reason_has_no_comma_of_its_own(line):
    """Reasons go back to the real client, which splits on every comma."""
    with pytest.raises(GrammarException) as info:
        parse_message(line)
    assert "," not in info.value.reason


def test_error_reason_shortens_long_input():
    with pytest.raises(GrammarException) as info:
        parse_message("?" + "a" * 100 + "_")
    assert "..." in info.value.reason
    assert "a" * 100 not in info.value.reason


def test_error_reason_quotes_unknown_escape():
    with pytest.raises(GrammarException) as info:
        parse_message("?x,ab,c\\q")
    assert info.value.reason.startswith("unknown escape \\q in argument 2 ")


# --------------------------------------------------------------------------
# Building messages
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, expected", [
    pytest.param(dict(message_type=REQUEST, name="status"),
                 ("?", "status", None, []), id="request-keywords"),
    pytest.param(dict(message_type=REQUEST, name="status", code=""),
                 ("?", "status", None, []), id="request-empty-code"),
    pytest.param(dict(message_type=REQUEST, name="status", code=None),
                 ("?", "status", None, []), id="request-none-code"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=["a", "", "b,c"]),
                 ("?", "x", None, ["a", "", "b,c"]), id="request-args"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=("a", "b")),
                 ("?", "x", None, ["a", "b"]), id="request-tuple-args"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=iter(["a"])),
                 ("?", "x", None, ["a"]), id="request-iterator-args"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=[]),
                 ("?", "x", None, []), id="request-empty-args"),
    pytest.param(dict(message_type=REPLY, name="status", code=OK, arguments=["1", "0"]),
                 ("!", "status", "ok", ["1", "0"]), id="reply-ok-keywords"),
    pytest.param(dict(message_type=REPLY, name="status", code=FAIL, arguments=["why"]),
                 ("!", "status", "fail", ["why"]), id="reply-fail"),
    pytest.param(dict(message_type=REPLY, name="status", code=INVALID),
                 ("!", "status", "invalid", []), id="reply-invalid-no-args"),
    pytest.param(dict(message_type=REPLY, name="s", code=OK,
                      arguments=["\t", "\\", SURROGATE, "\x01", "\ud800"]),
                 ("!", "s", "ok", ["\t", "\\", SURROGATE, "\x01", "\ud800"]),
                 id="reply-odd-but-legal-args"),
])
def test_build_valid(kwargs, expected):
    message = Message(**kwargs)
    assert _parts(message) == expected


def test_build_positional():
    assert Message(REPLY, "x", OK, ["a"]) == Message(
        message_type=REPLY, name="x", code=OK, arguments=["a"])


def test_build_copies_arguments():
    arguments = ["a"]
    message = Message(REQUEST, "x", arguments=arguments)
    arguments.append("b")
    assert message.arguments == ["a"]


@pytest.mark.parametrize("kwargs, reason, name", [
    pytest.param(dict(message_type="#", name="x"), "bad message type", None, id="type-hash"),
    pytest.param(dict(message_type="", name="x"), "bad message type", None, id="type-empty"),
    pytest.param(dict(message_type="?!", name="x"), "bad message type", None, id="type-both"),
    pytest.param(dict(message_type=None, name="x"), "bad message type", None, id="type-none"),
    pytest.param(dict(message_type=REQUEST, name=""), "bad name", None, id="name-empty"),
    pytest.param(dict(message_type=REQUEST, name="1x"), "bad name", None, id="name-digit"),
    pytest.param(dict(message_type=REQUEST, name="a_b"), "bad name", None,
                 id="name-underscore"),
    pytest.param(dict(message_type=REQUEST, name="a b"), "bad name", None, id="name-space"),
    pytest.param(dict(message_type=REQUEST, name="x,y"), "bad name", None, id="name-comma"),
    pytest.param(dict(message_type=REQUEST, name="x\n"), "bad name", None, id="name-lf"),
    pytest.param(dict(message_type=REQUEST, name="città"), "bad name", None,
                 id="name-non-ascii"),
    pytest.param(dict(message_type=REQUEST, name=None), "bad name", None, id="name-none"),
    pytest.param(dict(message_type=REQUEST, name=b"x"), "bad name", None, id="name-bytes"),
    pytest.param(dict(message_type=REPLY, name="x", code="OK"), "bad return code", "x",
                 id="reply-upper-code"),
    pytest.param(dict(message_type=REPLY, name="x", code="maybe"), "bad return code", "x",
                 id="reply-bad-code"),
    pytest.param(dict(message_type=REQUEST, name="x", code=OK), "no return code", "x",
                 id="request-with-code"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=["a\rb"]), "CR", None,
                 id="arg-cr"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=["a\nb"]), "LF", None,
                 id="arg-lf"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=["a\x00b"]), "NUL", None,
                 id="arg-nul"),
    pytest.param(dict(message_type=REPLY, name="x", code=OK, arguments=["", "\x1b"]),
                 "argument 2 holds a ESC", None, id="arg-esc"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=[1]), "argument 1 is a int",
                 None, id="arg-int"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=["a", b"b"]),
                 "argument 2 is a bytes", None, id="arg-bytes"),
    pytest.param(dict(message_type=REQUEST, name="x", arguments=[None]), "is a NoneType",
                 None, id="arg-none"),
])
def test_build_invalid(kwargs, reason, name):
    with pytest.raises(GrammarException) as info:
        Message(**kwargs)
    assert reason in info.value.reason
    assert info.value.name == name


def test_attributes_can_be_set_as_in_1_4():
    message = ok("status", "1")
    message.arguments = ["2"]
    message.code = FAIL
    assert str(message) == "!status,fail,2"
    message.arguments.append("3")
    assert str(message) == "!status,fail,2,3"


@pytest.mark.parametrize("attribute, value, reason", [
    ("message_type", "x", "bad message type"),
    ("name", "bad name", "bad name"),
    ("code", "maybe", "bad return code"),
    ("arguments", ["a\nb"], "LF"),
])
def test_a_message_changed_into_a_bad_one_cannot_be_written(attribute, value, reason):
    message = ok("status", "1")
    setattr(message, attribute, value)
    with pytest.raises(GrammarException, match=reason):
        str(message)
    with pytest.raises(GrammarException, match=reason):
        message.check_synthax()


def test_no_new_attributes():
    message = request("status")
    with pytest.raises(AttributeError):
        setattr(message, "extra", 1)


def test_unhashable():
    with pytest.raises(TypeError):
        hash(request("status"))


@pytest.mark.parametrize("left, right, equal", [
    pytest.param(request("x", "a"), Message(REQUEST, "x", None, ["a"]), True, id="same"),
    pytest.param(request("x", "a"), parse_message("?x,a"), True, id="built-vs-parsed"),
    pytest.param(ok("x"), parse_message("!x,ok\r\n"), True, id="reply-built-vs-parsed"),
    pytest.param(request("x"), request("y"), False, id="name"),
    pytest.param(request("x"), request("x", ""), False, id="no-args-vs-empty-arg"),
    pytest.param(request("x", "a"), request("x", "b"), False, id="argument"),
    pytest.param(request("x", "a", "b"), request("x", "a,b"), False, id="split"),
    pytest.param(request("x"), ok("x"), False, id="type"),
    pytest.param(ok("x"), fail("x", "r"), False, id="code-and-args"),
    pytest.param(fail("x", "r"), invalid("x", "r"), False, id="code"),
])
def test_equality(left, right, equal):
    assert (left == right) is equal
    assert (right == left) is equal
    assert (left != right) is not equal


@pytest.mark.parametrize("other", [None, "?x", ("?", "x", None, []), 0])
def test_not_equal_to_other_types(other):
    assert request("x") != other
    assert not request("x") == other  # pylint: disable=unneeded-not


@pytest.mark.parametrize("message, text", [
    pytest.param(request("status"),
                 "Message(message_type='?', name='status', code=None, arguments=[])",
                 id="request"),
    pytest.param(ok("status", "a,b", "\t"),
                 "Message(message_type='!', name='status', code='ok', "
                 "arguments=['a,b', '\\t'])", id="reply"),
])
def test_repr(message, text):
    assert repr(message) == text


def test_repr_evaluates_back():
    message = fail("get-tpi", "timeout after 30 s")
    assert eval(repr(message), {"Message": Message}) == message  # pylint: disable=eval-used


@pytest.mark.parametrize("message, is_req", [
    pytest.param(request("x"), True, id="request"),
    pytest.param(parse_message("?x,a"), True, id="parsed-request"),
    pytest.param(ok("x"), False, id="ok"),
    pytest.param(fail("x", "r"), False, id="fail"),
    pytest.param(parse_message("!x,invalid,r"), False, id="parsed-invalid"),
])
def test_is_request_is_reply(message, is_req):
    assert message.is_request() is is_req
    assert message.is_reply() is (not is_req)


@pytest.mark.parametrize("answer, question, correct", [
    pytest.param(ok("status"), request("status"), True, id="ok"),
    pytest.param(fail("status", "r"), request("status", "a"), True, id="fail"),
    pytest.param(invalid("status", "r"), request("status"), True, id="invalid"),
    pytest.param(parse_message("!get-tpi,ok,1,2"), parse_message("?get-tpi"), True,
                 id="parsed"),
    pytest.param(ok("status"), request("stop"), False, id="different-name"),
    pytest.param(ok("status"), request("Status"), False, id="name-case"),
    pytest.param(request("status"), request("status"), False, id="request-to-request"),
    pytest.param(ok("status"), ok("status"), False, id="reply-to-reply"),
    pytest.param(request("status"), ok("status"), False, id="request-to-reply"),
])
def test_is_correct_reply(answer, question, correct):
    assert answer.is_correct_reply(question) is correct


# --------------------------------------------------------------------------
# Serializing
# --------------------------------------------------------------------------

@pytest.mark.parametrize("message, text", [
    pytest.param(request("status"), "?status", id="request-bare"),
    pytest.param(request("x", ""), "?x,", id="request-one-empty"),
    pytest.param(request("x", "", ""), "?x,,", id="request-two-empty"),
    pytest.param(request("x", "a", "b"), "?x,a,b", id="request-args"),
    pytest.param(ok("status"), "!status,ok", id="reply-ok-no-values"),
    pytest.param(ok("status", ""), "!status,ok,", id="reply-ok-empty-value"),
    pytest.param(fail("status", "timeout after 30 s"), "!status,fail,timeout after 30 s",
                 id="reply-fail"),
    pytest.param(invalid("undefined", "bad name"), "!undefined,invalid,bad name",
                 id="reply-invalid"),
    pytest.param(request("x", "a\\b"), "?x,a\\\\b", id="escape-backslash"),
    pytest.param(request("x", "a,b"), "?x,a\\,b", id="escape-comma"),
    pytest.param(request("x", "a\tb"), "?x,a\\tb", id="escape-tab"),
    pytest.param(request("x", ",", "\\", "\t"), "?x,\\,,\\\\,\\t", id="escape-each-alone"),
    pytest.param(request("x", "\\,\t"), "?x,\\\\\\,\\t", id="escape-all-together"),
    pytest.param(request("x", "a", "b,c"), "?x,a,b\\,c", id="escape-second-arg"),
    pytest.param(request("x", "città", "Ω"), "?x,città,Ω", id="no-escape-non-ascii"),
    pytest.param(request("x", "a\x01b", "\x7f"), "?x,a\x01b,\x7f", id="no-escape-control"),
    pytest.param(request("x", SURROGATE), "?x," + SURROGATE, id="no-escape-surrogate"),
    pytest.param(request("x", " 'q' \"r\" ; = ?!"), "?x, 'q' \"r\" ; = ?!",
                 id="no-escape-punctuation"),
    pytest.param(reply("x", FAIL, "a,b"), "!x,fail,a\\,b", id="reply-escaped"),
])
def test_str(message, text):
    assert str(message) == text
    assert parse_message(text) == message


@pytest.mark.parametrize("argument, escaped", [
    pytest.param("", "", id="empty"),
    pytest.param("plain text", "plain text", id="plain"),
    pytest.param("\\", "\\\\", id="backslash"),
    pytest.param(",", "\\,", id="comma"),
    pytest.param("\t", "\\t", id="tab"),
    pytest.param("a\\b,c\td", "a\\\\b\\,c\\td", id="all"),
    pytest.param("\\t", "\\\\t", id="backslash-t"),
    pytest.param("città\x01", "città\x01", id="non-ascii-and-control"),
])
def test_escape(argument, escaped):
    assert escape(argument) == escaped


@pytest.mark.parametrize("code", [None, ""])
def test_a_reply_built_without_its_code_gets_it_later_as_in_1_4(code):
    message = Message(message_type=REPLY, name="x", code=code)
    with pytest.raises(GrammarException, match="bad return code"):
        str(message)
    with pytest.raises(GrammarException, match="bad return code"):
        message.check_synthax()
    message.code = OK
    message.arguments = ["a,b"]
    assert message.check_synthax() is True
    assert serialize_line(message) == b"!x,ok,a\\,b\r\n"


@pytest.mark.parametrize("bad", ["\n", "\r", "\x00", "a\x1b", 5, None])
def test_a_bad_argument_added_later_is_refused_when_written(bad):
    message = request("x", "a")
    message.arguments.append(bad)
    with pytest.raises(GrammarException):
        str(message)
    with pytest.raises(GrammarException):
        serialize_line(message)


def test_parsed_and_built_messages_serialize_the_same():
    line = "!status,ok,1700000000.0000000,ok,0"
    assert str(parse_message(line)) == line
    assert str(ok("status", "1700000000.0000000", "ok", "0")) == line
    assert str(ok("status")) == "!status,ok"
    assert str(ok("x", "a,b", "c\td")) == "!x,ok,a\\,b,c\\td"


@pytest.mark.parametrize("message, data", [
    pytest.param(request("status"), b"?status\r\n", id="request"),
    pytest.param(ok("version", "1.4"), b"!version,ok,1.4\r\n", id="reply"),
    pytest.param(request("x", "città"), "?x,città\r\n".encode("utf-8"), id="utf-8"),
    pytest.param(request("x", SURROGATE), b"?x,\xff\r\n", id="surrogate-escape"),
    pytest.param(request("x", "a,b"), b"?x,a\\,b\r\n", id="escaped"),
])
def test_serialize_line(message, data):
    assert serialize_line(message) == data
    assert parse_line(data) == message


@pytest.mark.parametrize("data", [
    pytest.param(b"?x,\xff\r\n", id="ff"),
    pytest.param(b"?x,\xc3\r\n", id="truncated-utf-8"),
    pytest.param(b"?x,\xed\xa0\x80\r\n", id="encoded-surrogate"),
    pytest.param(b"!x,ok,\x80\x81,\xfe\r\n", id="reply-several"),
    pytest.param(b"?x,\xe2\x82\xac\r\n", id="euro"),
])
def test_bytes_round_trip(data):
    message = parse_line(data)
    assert serialize_line(message) == data


@pytest.mark.parametrize("data, expected", [
    pytest.param(b"?x,\xff\r\n", ("?", "x", None, [SURROGATE]), id="ff"),
    pytest.param(b"?x,\xe2\x82\xac\n", ("?", "x", None, ["\u20ac"]), id="euro-lf"),
    pytest.param(b"!x,ok\r\n", ("!", "x", "ok", []), id="reply"),
])
def test_parse_line(data, expected):
    assert _parts(parse_line(data)) == expected


@pytest.mark.parametrize("argument", [
    pytest.param("\ud800", id="high-surrogate"),
    pytest.param("a\udbff", id="high-surrogate-last"),
    pytest.param("\udc7f", id="low-surrogate-below-escape-range"),
    pytest.param("\udfff", id="low-surrogate-top"),
])
def test_serialize_line_unencodable(argument):
    message = request("x", "ok", argument)
    str(message)  # the text form is fine; only the wire bytes are not
    with pytest.raises(GrammarException) as info:
        serialize_line(message)
    assert "unencodable" in info.value.reason
    assert info.value.name == "x"


# --------------------------------------------------------------------------
# Convenience constructors and helpers
# --------------------------------------------------------------------------

@pytest.mark.parametrize("message, expected", [
    pytest.param(request("status"), ("?", "status", None, []), id="request"),
    pytest.param(request("x", "a", "b"), ("?", "x", None, ["a", "b"]), id="request-args"),
    pytest.param(reply("x", OK), ("!", "x", "ok", []), id="reply-ok"),
    pytest.param(reply("x", FAIL, "r"), ("!", "x", "fail", ["r"]), id="reply-fail"),
    pytest.param(reply("x", INVALID, "r", "s"), ("!", "x", "invalid", ["r", "s"]),
                 id="reply-invalid"),
    pytest.param(ok("x"), ("!", "x", "ok", []), id="ok"),
    pytest.param(ok("x", "1", "2"), ("!", "x", "ok", ["1", "2"]), id="ok-values"),
    pytest.param(fail("x", "timeout"), ("!", "x", "fail", ["timeout"]), id="fail"),
    pytest.param(invalid("undefined", "bad name"), ("!", "undefined", "invalid", ["bad name"]),
                 id="invalid"),
])
def test_convenience_constructors(message, expected):
    assert _parts(message) == expected


@pytest.mark.parametrize("build, reason", [
    pytest.param(lambda: request("1x"), "bad name", id="request-bad-name"),
    pytest.param(lambda: request("x", "a\n"), "LF", id="request-bad-arg"),
    pytest.param(lambda: reply("x", "OK"), "bad return code", id="reply-bad-code"),
    pytest.param(lambda: ok("x", "\x00"), "NUL", id="ok-bad-value"),
    pytest.param(lambda: fail("x", "a\r\nb"), "CR", id="fail-bad-reason"),
    pytest.param(lambda: invalid("", "r"), "bad name", id="invalid-bad-name"),
])
def test_convenience_constructors_check(build, reason):
    with pytest.raises(GrammarException) as info:
        build()
    assert reason in info.value.reason


@pytest.mark.parametrize("name, valid", [
    pytest.param("status", True, id="word"),
    pytest.param("x", True, id="one-letter"),
    pytest.param("Z", True, id="upper"),
    pytest.param("get-tpi", True, id="dash"),
    pytest.param("a1-2b", True, id="digits"),
    pytest.param("a-", True, id="dash-last"),
    pytest.param("", False, id="empty"),
    pytest.param("1a", False, id="digit-first"),
    pytest.param("-a", False, id="dash-first"),
    pytest.param("a_b", False, id="underscore"),
    pytest.param("a b", False, id="space"),
    pytest.param("a\n", False, id="trailing-lf"),
    pytest.param("città", False, id="non-ascii"),
    pytest.param("é", False, id="non-ascii-letter"),
    pytest.param("\uff41", False, id="fullwidth-a"),
    pytest.param("a\u0661", False, id="arabic-indic-digit"),
    pytest.param("?a", False, id="with-type"),
])
def test_is_valid_name(name, valid):
    assert is_valid_name(name) is valid
    assert is_valid_name(name) is valid  # and again, from any cache


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True)
ARGUMENT_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("\\,\t ab1"),
        st.characters(blacklist_characters="\r\n\x00\x1b"),
    ),
    max_size=12,
)
ARGUMENTS = st.lists(ARGUMENT_TEXT, max_size=6)


@st.composite
def messages(draw):
    """Any message the grammar can represent."""
    message_type = draw(st.sampled_from([REQUEST, REPLY]))
    code = draw(st.sampled_from([OK, FAIL, INVALID])) if message_type == REPLY else None
    return Message(message_type=message_type, name=draw(NAMES), code=code,
                   arguments=draw(ARGUMENTS))


@MESSAGES
@given(messages())
def test_property_str_round_trip(message):
    text = str(message)
    assert parse_message(text) == message
    assert parse_message(text + "\r\n") == message
    assert parse_message(text + "\n") == message


@MESSAGES
@given(messages())
def test_property_serialize_line_round_trip(message):
    try:
        data = serialize_line(message)
    except GrammarException:
        # Only lone surrogates outside the surrogateescape range are unencodable.
        assert any(0xD800 <= ord(char) <= 0xDFFF and not 0xDC80 <= ord(char) <= 0xDCFF
                   for argument in message.arguments for char in argument)
        return
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == 1 and data.count(b"\r") == 1
    assert parse_line(data) == message


LINE_TEXT = st.one_of(
    st.text(),
    st.text(alphabet="?!ab1-,\\tq\r\n\t\x00\x1b okfailinvalid"),
    st.builds(lambda head, tail: head + tail,
              st.sampled_from(["?x", "!x,ok", "!x,fail,", "?get-tpi,", "!x,", "!x"]),
              st.text(alphabet=",\\tq\r\n\t\x00\x1b a\udcff")),
)


@FAST
@given(LINE_TEXT)
def test_property_any_text(line):
    try:
        message = parse_message(line)
    except GrammarException as error:
        assert isinstance(error.reason, str) and error.reason
        assert error.name is None or is_valid_name(error.name)
        return
    assert isinstance(message, Message)
    assert parse_message(str(message)) == message


LINE_BYTES = st.one_of(
    st.binary(),
    st.builds(lambda head, tail: head + tail,
              st.sampled_from([b"?x", b"!x,ok", b"!x,invalid,", b"?a-1,"]),
              st.binary()),
    st.builds(lambda head, tail: head + tail,
              st.sampled_from([b"?x,", b"!x,ok,"]),
              st.lists(st.sampled_from([b"\\", b",", b"t", b"\xff", b"\xc3\xa9", b"\r",
                                        b"\n", b"\t", b"a"])).map(b"".join)),
)


@FAST
@given(LINE_BYTES)
def test_property_any_bytes(data):
    try:
        message = parse_line(data)
    except GrammarException as error:
        assert isinstance(error.reason, str) and error.reason
        return
    assert parse_message(str(message)) == message
    wire = serialize_line(message)
    assert parse_line(wire) == message
    assert serialize_line(parse_line(wire)) == wire


# --------------------------------------------------------------------------
# Sans-IO
# --------------------------------------------------------------------------

def test_grammar_imports_no_twisted():
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys, discosbackend.grammar; print('twisted' in sys.modules)"],
        capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("kwargs", [
    pytest.param({"message_type": REPLY, "code": []}, id="unhashable-code"),
    pytest.param({"message_type": REQUEST, "code": 0}, id="falsy-request-code"),
    pytest.param({"message_type": REQUEST, "code": False}, id="false-request-code"),
    pytest.param({"message_type": REPLY, "code": OK, "arguments": "1.4"}, id="str-arguments"),
])
def test_odd_constructor_values_are_grammar_errors(kwargs):
    with pytest.raises(GrammarException):
        Message(name="x", **kwargs)


# -- split_arguments and ok_line: the server's shortcuts -------------------------

@pytest.mark.parametrize("text, arguments", [
    ("SK00", ["SK00"]),
    ("1,2,,3", ["1", "2", "", "3"]),
    ("", [""]),
    ("a\\,b,c\\\\d,e\\tf", ["a,b", "c\\d", "e\tf"]),
    ("tab\there", ["tab\there"]),
])
def test_split_arguments_unescapes_like_parse_message(text, arguments):
    assert grammar.split_arguments(text, "x") == arguments
    assert grammar.split_arguments(text, "x") == parse_message("?x," + text).arguments


@pytest.mark.parametrize("text", ["bad\\q", "end\\", "cr\rhere", "nul\x00"])
def test_split_arguments_errors_carry_the_name(text):
    with pytest.raises(GrammarException) as caught:
        grammar.split_arguments(text, "set-filename")
    assert caught.value.name == "set-filename"


@pytest.mark.parametrize("name, values", [
    ("status", ["1700000000.0000000", "ok", "0"]),
    ("start", []),
    ("get-configuration", ["a,b\\c\td"]),
    ("never-seen-name-before", ["x"]),
    ("version", ["1.4"]),
])
def test_ok_line_is_the_serialized_ok_reply(name, values):
    assert grammar.ok_line(name, values) == serialize_line(ok(name, *values))


def test_ok_line_refuses_what_the_wire_cannot_carry():
    with pytest.raises(GrammarException):
        grammar.ok_line("status", ["line\nbreak"])
    with pytest.raises(GrammarException):
        grammar.ok_line("status", [1])  # type: ignore[list-item]
    with pytest.raises(GrammarException):
        grammar.ok_line("bad name", ["x"])


@FAST
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n\x00\x1b",
                                                blacklist_categories=("Cs",))),
                max_size=5))
def test_ok_line_matches_ok_for_any_values(values):
    assert grammar.ok_line("get-tpi", values) == serialize_line(ok("get-tpi", *values))
    assert parse_line(grammar.ok_line("get-tpi", values)).arguments == values


def test_without_a_line_end_a_trailing_cr_is_a_control_character():
    assert parse_message("?a,x\r\n").arguments == ["x"]
    with pytest.raises(GrammarException, match="control character CR"):
        parse_message("?a,x\r", line_end=False)
    with pytest.raises(GrammarException):
        parse_message("?a\r", line_end=False)


# -- the request path's helpers: Message checks, name_of, parse_line's line end ----

@pytest.mark.parametrize("name", [["status"], None, b"status", 7])
def test_a_name_that_is_not_a_str_is_a_grammar_error(name):
    with pytest.raises(GrammarException, match="^bad name"):
        Message("?", name)


@pytest.mark.parametrize("line, name", [
    pytest.param(b"?status", "status", id="valid-name"),
    pytest.param(b"?get-tpi,0,0", "get-tpi", id="name-with-arguments"),
    pytest.param(b"?set-filename,/" + b"x" * 500, "set-filename", id="long-arguments"),
    pytest.param(b"?" + b"a" * (grammar.NAME_PREFIX - 2), "a" * (grammar.NAME_PREFIX - 2),
                 id="longest-name-without-comma"),
    pytest.param(b"?" + b"a" * (grammar.NAME_PREFIX - 1), "undefined",
                 id="no-comma-within-prefix"),
    pytest.param(b"?" + b"a" * grammar.NAME_PREFIX + b",x", "undefined",
                 id="comma-beyond-prefix"),
    pytest.param(b"?caf\xc3\xa9", "undefined", id="non-ascii"),
    pytest.param(b"?st\xffatus,1", "undefined", id="non-utf8"),
    pytest.param(b"?9lives", "undefined", id="bad-name"),
    pytest.param(b"", "undefined", id="empty"),
    pytest.param(b"!status,ok", "status", id="a-reply"),
    pytest.param(b"hello", "undefined", id="no-type-char"),
    pytest.param(b"xstatus,1", "undefined", id="bad-type-char"),
])
def test_name_of(line, name):
    assert grammar.name_of(line) == name


def test_parse_line_keeps_a_trailing_cr_without_a_line_end():
    with pytest.raises(GrammarException):
        parse_line(b"?a\r", line_end=False)
    assert parse_line(b"?a\r\n") == request("a")
    assert parse_line(b"?a\r") == request("a")  # line_end=True: the CR is the line end
