"""Tests for discosbackend.commands: kinds, arguments, the command table."""

import math
import re
from decimal import Decimal
from fractions import Fraction

import pytest
from astropy.time import Time
from hypothesis import given, settings
from hypothesis import strategies as st

from discosbackend import __protocol_version__, grammar
from discosbackend.backend import Backend
from discosbackend.commands import (
    BOOLEAN, CLIENT, COMMANDS, EXTENSION, FLOAT, INTEGER, LIBRARY_COMMANDS,
    NON_NEGATIVE_INTEGER, PROTOCOL_VERSIONS, TEXT, TIMESTAMP, UNCHANGED, VERSION, WORD, Argument,
    ArgumentError, Command, ReplyShapeError, ReplyValue, check_protocol_version, command,
    commands_of, reason_text)
from discosbackend.errors import HandlerException
from discosbackend.timediscos import acs_to_time, time_to_acs

# 2023-11-14T22:13:20.1234567 UTC: unix seconds and the same instant in ticks.
UNIX_TEXT = "1700000000.1234567"
TICKS = 17_000_000_001_234_567

# Whatever a Kind's format may raise for a value it refuses.
FORMAT_ERRORS = (ValueError, TypeError, ArithmeticError)


# -- Kind.parse ------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("10", 10), ("-15", -15), ("0", 0), ("-0", 0), ("007", 7),
    ("123456789012345678901234567890", 123456789012345678901234567890),
])
def test_integer_parses(text, value):
    parsed = INTEGER.parse(text)
    assert parsed == value
    assert type(parsed) is int


@pytest.mark.parametrize("text", [
    "+5", " 5", "5 ", "1.0", "1_000", "", "-", "--5", "abc", "0x10", "1e3",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() takes it, the wire must not
    "\uff15",  # FULLWIDTH DIGIT FIVE
    "5\n",
])
def test_integer_rejects(text):
    with pytest.raises(ValueError):
        INTEGER.parse(text)


@pytest.mark.parametrize("text, value", [("0", 0), ("10", 10), ("-0", 0)])
def test_non_negative_integer_parses(text, value):
    assert NON_NEGATIVE_INTEGER.parse(text) == value


@pytest.mark.parametrize("text", ["-1", "-15", "+1", "1.0", "", "abc"])
def test_non_negative_integer_rejects(text):
    with pytest.raises(ValueError):
        NON_NEGATIVE_INTEGER.parse(text)


@pytest.mark.parametrize("text, value", [
    ("1500.000000", 1500.0),   # printf %f
    ("1500", 1500.0),          # iostream default
    ("1234.57", 1234.57),
    ("1e+06", 1e6),
    ("1E-3", 1e-3),
    ("0", 0.0),
    ("-3.5", -3.5),
    (".5", 0.5),
    ("5.", 5.0),
    ("-0.25", -0.25),
])
def test_float_parses(text, value):
    parsed = FLOAT.parse(text)
    assert parsed == value
    assert type(parsed) is float


@pytest.mark.parametrize("text", [
    "nan", "NaN", "inf", "-inf", "Infinity", "1e", "e5", "abc", "", ".", "-",
    "1,5", " 1", "1 ", "1_0", "0x1p3", "1.0.0",
])
def test_float_rejects(text):
    with pytest.raises(ValueError):
        FLOAT.parse(text)


@pytest.mark.parametrize("text", ["1e999", "-1e999", "9" * 400], ids=["1e999", "-1e999", "400-nines"])
def test_float_rejects_values_that_overflow_to_infinity(text):
    # docs/protocol.md section 5: reject inf where a physical value is expected.
    # float() turns an out-of-range literal into inf, which must not pass.
    with pytest.raises(ValueError):
        FLOAT.parse(text)


@settings(max_examples=50, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_accepts_what_a_c_client_prints(number):
    for text in (f"{number:f}", f"{number:g}", f"{number:e}", repr(number)):
        assert FLOAT.parse(text) == float(text)


@pytest.mark.parametrize("text, value", [("1", True), ("0", False)])
def test_boolean_parses(text, value):
    assert BOOLEAN.parse(text) is value


@pytest.mark.parametrize("text", ["true", "false", "yes", "2", "-1", "01", "1.0", "", " 1"])
def test_boolean_rejects(text):
    with pytest.raises(ValueError):
        BOOLEAN.parse(text)


@pytest.mark.parametrize("text", ["a b", "/archive/x.fits", "0", "*", "a,b"])
def test_text_parses_any_non_empty_text(text):
    assert TEXT.parse(text) == text


def test_text_rejects_empty():
    with pytest.raises(ValueError):
        TEXT.parse("")


@pytest.mark.parametrize("text", ["ok", "FullStokes", "error-42"])
def test_word_parses(text):
    assert WORD.parse(text) == text


@pytest.mark.parametrize("text", ["", "not ok", " ok", "ok ", "a\tb"])
def test_word_rejects(text):
    with pytest.raises(ValueError):
        WORD.parse(text)


@pytest.mark.parametrize("ticks_text, unix_text", [
    (str(TICKS), UNIX_TEXT),
    ("14309227829708830", "1430922782.9708830"),  # the published example
    ("17000000000000000", "1700000000.0"),
    ("17000000000000001", "1700000000.00000010"),
])
def test_timestamp_ticks_and_unix_seconds_are_the_same_instant(ticks_text, unix_text):
    from_ticks = TIMESTAMP.parse(ticks_text)
    from_seconds = TIMESTAMP.parse(unix_text)
    assert isinstance(from_ticks, Time)
    assert isinstance(from_seconds, Time)
    assert time_to_acs(from_ticks) == int(ticks_text)
    assert time_to_acs(from_seconds) == int(ticks_text)


@pytest.mark.parametrize("text", [
    "0", "0.0", "0.0000000", "-1", "-17000000000000000", "-1700000000.5", "abc", "",
    "1e9", "+17000000000000000",
])
def test_timestamp_rejects(text):
    with pytest.raises(ValueError) as caught:
        TIMESTAMP.parse(text)
    assert str(caught.value).startswith("invalid timestamp")


# -- Kind.format -----------------------------------------------------------

@pytest.mark.parametrize("value, text", [
    (5, "5"), (-15, "-15"), (0, "0"), (True, "1"), (False, "0"), (3.0, "3"),
    (-2.0, "-2"), ("42", "42"), ("-7", "-7"), (Decimal(8), "8"), (Fraction(6, 2), "3"),
])
def test_integer_formats(value, text):
    assert INTEGER.format(value) == text
    assert NON_NEGATIVE_INTEGER.format(value) == text


@pytest.mark.parametrize("value", [3.5, 0.1, -1.5, "1.0", "abc", "", None, math.nan, math.inf])
def test_integer_format_rejects(value):
    with pytest.raises(FORMAT_ERRORS):
        INTEGER.format(value)


@pytest.mark.parametrize("value, text", [
    (1500.0, "1500.0"), (1234.57, "1234.57"), (1e6, "1000000.0"), (5, "5.0"),
    (-3.5, "-3.5"), (0.1, "0.1"), ("1500", "1500.0"), ("1e+06", "1000000.0"),
    (Decimal("2.5"), "2.5"), (1e20, "1e+20"),
])
def test_float_formats_as_repr(value, text):
    assert FLOAT.format(value) == text
    assert FLOAT.parse(FLOAT.format(value)) == float(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "abc",
                                   "1e999", None])
def test_float_format_rejects(value):
    with pytest.raises(FORMAT_ERRORS):
        FLOAT.format(value)


@settings(max_examples=50, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_format_round_trips(number):
    assert FLOAT.parse(FLOAT.format(number)) == number


@settings(max_examples=50, deadline=None)
@given(st.integers())
def test_integer_format_round_trips(number):
    assert INTEGER.parse(INTEGER.format(number)) == number


@pytest.mark.parametrize("value, text", [
    (True, "1"), (False, "0"), (1, "1"), (0, "0"), (1.0, "1"), ("1", "1"), ("0", "0"),
])
def test_boolean_formats(value, text):
    assert BOOLEAN.format(value) == text


@pytest.mark.parametrize("value", [2, -1, 0.5, "true", "", "yes", None])
def test_boolean_format_rejects(value):
    with pytest.raises(FORMAT_ERRORS):
        BOOLEAN.format(value)


@pytest.mark.parametrize("value, text", [
    (1700000000.5, "1700000000.5000000"),
    (1700000000.1234567, UNIX_TEXT),
    (1700000000, "1700000000.0000000"),
    (Fraction(TICKS, 10**7), UNIX_TEXT),
    (Decimal(UNIX_TEXT), UNIX_TEXT),
    (acs_to_time(TICKS), UNIX_TEXT),
])
def test_timestamp_formats_with_seven_decimals(value, text):
    assert TIMESTAMP.format(value) == text


@pytest.mark.parametrize("value", ["clock error", None, True, -1.0, -1, math.nan, math.inf])
def test_timestamp_format_rejects(value):
    with pytest.raises(FORMAT_ERRORS):
        TIMESTAMP.format(value)


def test_word_and_text_format():
    assert WORD.format("ok") == "ok"
    assert TEXT.format("SK00") == "SK00"
    assert TEXT.format(5) == "5"
    with pytest.raises(ValueError):
        WORD.format("not ok")
    with pytest.raises(ValueError):
        WORD.format("")


# -- Argument ----------------------------------------------------------------

def test_wildcard_argument_passes_unchanged():
    section = Argument("section", INTEGER, wildcard=True)
    assert section.parse("*") == UNCHANGED == "*"
    assert section.parse("-1") == -1


def test_star_without_wildcard_is_an_error():
    argument = Argument("shift", INTEGER)
    with pytest.raises(ArgumentError) as caught:
        argument.parse("*")
    assert str(caught.value) == "invalid shift '*': expected an integer"


@pytest.mark.parametrize("argument, text, message", [
    (Argument("shift", INTEGER), "x", "invalid shift 'x': expected an integer"),
    (Argument("integration", NON_NEGATIVE_INTEGER), "-1",
     "invalid integration '-1': expected an integer >= 0"),
    (Argument("frequency", FLOAT), "nan", "invalid frequency 'nan': expected a finite number"),
    (Argument("section", INTEGER, wildcard=True), "all",
     "invalid section 'all': expected an integer or *"),
    (Argument("mode", TEXT, wildcard=True), "", "invalid mode '': expected a non-empty text or *"),
    (Argument("flag", BOOLEAN), "yes", "invalid flag 'yes': expected 1 or 0"),
    (Argument("timestamp", TIMESTAMP), "abc",
     "invalid timestamp 'abc': expected ACS 100 ns ticks (integer) or unix seconds "
     "(with a decimal point)"),
])
def test_argument_error_text(argument, text, message):
    with pytest.raises(ArgumentError) as caught:
        argument.parse(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, HandlerException)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == grammar.FAIL


@pytest.mark.parametrize("text, value", [("0", None), ("0.0", None), ("-0", None),
                                         ("1500", 1500.0), ("-2.5", -2.5)])
def test_zero_is_default(text, value):
    assert Argument("frequency", FLOAT, zero_is_default=True).parse(text) == value


@pytest.mark.parametrize("argument, usage", [
    (Argument("shift", INTEGER), "<shift:integer>"),
    (Argument("bins", INTEGER, wildcard=True), "<bins:integer|*>"),
    (Argument("frequency", FLOAT, optional=True), "[<frequency:float>]"),
    (Argument("interleave", NON_NEGATIVE_INTEGER, optional=True, default=0),
     "[<interleave:unsigned>]"),
])
def test_argument_usage(argument, usage):
    assert argument.usage() == usage


# -- Command.parse_arguments -------------------------------------------------

@pytest.mark.parametrize("name, texts, values", [
    ("status", [], []),
    ("version", [], []),
    ("set-configuration", ["SK00"], ["SK00"]),
    ("set-integration", ["40"], [40]),
    ("get-tpi", [], []),
    ("get-tpi", ["0", "0"], [None, None]),
    ("get-tpi", ["1500"], [1500.0]),
    ("get-tpi", ["1500", "300"], [1500.0, 300.0]),
    ("get-tp0", ["0", "0"], [None, None]),
    ("get-rms", [], []),
    ("start", [], []),
    ("stop", [], []),
    ("set-section", ["0", "100", "1500", "0", "0", "3000", "1024"],
     [0, 100.0, 1500.0, 0, "0", 3000.0, 1024]),
    ("set-section", ["1", "*", "*", "*", "*", "*", "*"], [1, "*", "*", "*", "*", "*", "*"]),
    ("set-section", ["-1", "50.0", "200.0", "1", "CP", "10", "2048"],
     [-1, 50.0, 200.0, 1, "CP", 10.0, 2048]),
    ("cal-on", [], [0]),
    ("cal-on", ["10"], [10]),
    ("set-filename", ["/archive/a b.fits"], ["/archive/a b.fits"]),
    ("convert-data", [], []),
    ("set-enable", ["0", "1"], [0, 1]),
    ("end-schedule", [], []),
    ("backend-park", [], []),
    ("set-shift", ["-3"], [-3]),
])
def test_parse_arguments(name, texts, values):
    parsed = COMMANDS[name].parse_arguments(texts)
    assert parsed == values
    assert [type(v) for v in parsed] == [type(v) for v in values]


def test_parse_arguments_timestamps():
    (from_ticks,) = COMMANDS["start"].parse_arguments([str(TICKS)])
    (from_seconds,) = COMMANDS["stop"].parse_arguments([UNIX_TEXT])
    assert time_to_acs(from_ticks) == time_to_acs(from_seconds) == TICKS


@pytest.mark.parametrize("name, count, message", [
    ("status", 1, "status takes no arguments (got 1)"),
    ("version", 2, "version takes no arguments (got 2)"),
    ("get-configuration", 1, "get-configuration takes no arguments (got 1)"),
    ("get-integration", 1, "get-integration takes no arguments (got 1)"),
    ("get-rms", 1, "get-rms takes no arguments (got 1)"),
    ("time", 1, "time takes no arguments (got 1)"),
    ("convert-data", 1, "convert-data takes no arguments (got 1)"),
    ("end-schedule", 3, "end-schedule takes no arguments (got 3)"),
    ("backend-park", 1, "backend-park takes no arguments (got 1)"),
    ("set-configuration", 0, "set-configuration needs 1 argument (got 0)"),
    ("set-configuration", 2, "set-configuration needs 1 argument (got 2)"),
    ("set-integration", 0, "set-integration needs 1 argument (got 0)"),
    ("set-filename", 0, "set-filename needs 1 argument (got 0)"),
    ("set-shift", 2, "set-shift needs 1 argument (got 2)"),
    ("set-enable", 1, "set-enable needs 2 arguments (got 1)"),
    ("set-enable", 3, "set-enable needs 2 arguments (got 3)"),
    ("set-section", 6, "set-section needs 7 arguments (got 6)"),
    ("set-section", 8, "set-section needs 7 arguments (got 8)"),
    ("set-section", 0, "set-section needs 7 arguments (got 0)"),
    ("get-tpi", 3, "get-tpi takes 0 to 2 arguments (got 3)"),
    ("get-tp0", 3, "get-tp0 takes 0 to 2 arguments (got 3)"),
    ("start", 2, "start takes 0 to 1 arguments (got 2)"),
    ("stop", 2, "stop takes 0 to 1 arguments (got 2)"),
    ("cal-on", 2, "cal-on takes 0 to 1 arguments (got 2)"),
])
def test_parse_arguments_count_errors(name, count, message):
    with pytest.raises(ArgumentError) as caught:
        COMMANDS[name].parse_arguments(["1"] * count)
    assert str(caught.value) == message


@pytest.mark.parametrize("name, texts, message", [
    ("set-integration", ["-5"], "invalid integration '-5': expected an integer >= 0"),
    ("set-section", ["0", "abc", "1500", "0", "0", "3000", "1024"],
     "invalid start_freq 'abc': expected a finite number or *"),
    ("set-section", ["0", "100", "1500", "0", "0", "3000", "1024.5"],
     "invalid bins '1024.5': expected an integer or *"),
    ("get-tpi", ["0", "inf"], "invalid bandwidth 'inf': expected a finite number"),
    ("cal-on", ["-1"], "invalid interleave '-1': expected an integer >= 0"),
    ("set-enable", ["0", "x"], "invalid feed2 'x': expected an integer"),
    ("set-configuration", [""], "invalid configuration '': expected a non-empty text"),
])
def test_parse_arguments_kind_errors(name, texts, message):
    with pytest.raises(ArgumentError) as caught:
        COMMANDS[name].parse_arguments(texts)
    assert str(caught.value) == message


@pytest.mark.parametrize("name, required", [
    ("status", 0), ("get-tpi", 0), ("start", 0), ("cal-on", 0), ("set-configuration", 1),
    ("set-enable", 2), ("set-section", 7),
])
def test_required(name, required):
    assert COMMANDS[name].required == required


# -- Command.format_reply / parse_reply ----------------------------------------

@pytest.mark.parametrize("name, result, values", [
    ("status", (1700000000.5, "ok", True), ["1700000000.5000000", "ok", "1"]),
    ("status", [acs_to_time(TICKS), "busy", 0], [UNIX_TEXT, "busy", "0"]),
    ("version", "1.4", ["1.4"]),
    ("get-configuration", "SK00", ["SK00"]),
    ("get-configuration", ["SK00"], ["SK00"]),
    ("get-integration", 40, ["40"]),
    ("get-integration", (40.0,), ["40"]),
    ("get-tpi", [903.21, 1240.57], ["903.21", "1240.57"]),
    ("get-tpi", (1, "2.5"), ["1.0", "2.5"]),
    ("get-tpi", 5.0, ["5.0"]),
    ("get-tpi", [], []),     # a repeated value may be absent: zero sections
    ("get-tpi", None, []),
    ("get-tp0", (0.0,), ["0.0"]),
    ("get-rms", [0.25, 0.5, 0.75], ["0.25", "0.5", "0.75"]),
    ("time", 1700000000.5, ["1700000000.5000000"]),
    ("time", acs_to_time(TICKS), [UNIX_TEXT]),
])
def test_format_reply(name, result, values):
    assert COMMANDS[name].format_reply(result) == values


@pytest.mark.parametrize("name", [
    "set-configuration", "set-integration", "start", "stop", "set-section", "cal-on",
    "set-filename", "convert-data", "set-enable", "end-schedule", "backend-park",
    "set-shift",
])
@pytest.mark.parametrize("result", [None, "done", 0, [1, 2, 3], (None,)])
def test_format_reply_ignores_values_of_commands_without_reply(name, result):
    assert COMMANDS[name].reply == ()
    assert COMMANDS[name].format_reply(result) == []


@pytest.mark.parametrize("name, result, message", [
    ("status", (1700000000.5, "ok"),
     "backend returned 2 values for status: expected timestamp status acquiring"),
    ("status", (1700000000.5, "ok", True, 4),
     "backend returned 4 values for status: expected timestamp status acquiring"),
    ("status", None, "backend returned 0 values for status: expected timestamp status acquiring"),
    ("status", 1700000000.5,
     "backend returned 1 value for status: expected timestamp status acquiring"),
    ("get-configuration", None,
     "backend returned 0 values for get-configuration: expected configuration"),
    ("get-configuration", ["a", "b"],
     "backend returned 2 values for get-configuration: expected configuration"),
    ("time", (), "backend returned 0 values for time: expected timestamp"),
])
def test_format_reply_wrong_count(name, result, message):
    with pytest.raises(ReplyShapeError) as caught:
        COMMANDS[name].format_reply(result)
    assert str(caught.value) == message


@pytest.mark.parametrize("name, result", [
    ("get-tpi", [1.0, "x"]),
    ("get-tpi", [1.0, math.nan]),
    ("get-tpi", [math.inf]),
    ("get-tpi", [None]),
    ("get-rms", ["one"]),
    ("get-integration", 3.5),
    ("get-integration", math.inf),
    ("get-integration", "forty"),
    ("status", (1700000000.5, "not ok", True)),
    ("status", (1700000000.5, "ok", 2)),
    ("status", ("clock error", "ok", True)),
    ("status", (-1.0, "ok", True)),
    ("time", "now"),
])
def test_format_reply_bad_value(name, result):
    with pytest.raises(ReplyShapeError) as caught:
        COMMANDS[name].format_reply(result)
    assert str(caught.value).startswith(f"{name} ")
    assert "expected" in str(caught.value)


def test_format_reply_bad_float_names_the_field_and_the_value():
    with pytest.raises(ReplyShapeError) as caught:
        COMMANDS["get-tpi"].format_reply([1.0, "x"])
    assert str(caught.value) == "get-tpi value: expected a finite number; got 'x'"


def test_format_reply_refuses_empty_text():
    # TEXT's own parse refuses "" ("a non-empty text"), so an empty
    # configuration id makes a reply (!get-configuration,ok,) that the
    # library's own parse_reply rejects.  format_reply must catch it.
    with pytest.raises(ReplyShapeError):
        COMMANDS["get-configuration"].format_reply("")


def test_format_reply_fixed_then_repeated_shape():
    mixed = Command("mixed", "mixed", (),
                    (ReplyValue("count", INTEGER), ReplyValue("v", FLOAT, repeated=True)))
    assert mixed.format_reply([2]) == ["2"]
    assert mixed.format_reply([2, 1.5, 2]) == ["2", "1.5", "2.0"]
    with pytest.raises(ReplyShapeError) as caught:
        mixed.format_reply([])
    assert str(caught.value) == "backend returned 0 values for mixed: expected count v..."
    assert mixed.parse_reply(["2", "1.5"]) == [2, 1.5]


def test_parse_reply_round_trip_status():
    command_ = COMMANDS["status"]
    texts = command_.format_reply((acs_to_time(TICKS), "ok", True))
    timestamp, status, acquiring = command_.parse_reply(texts)
    assert time_to_acs(timestamp) == TICKS
    assert status == "ok"
    assert acquiring is True


def test_parse_reply_round_trip_time():
    texts = COMMANDS["time"].format_reply(1700000000.5)
    (timestamp,) = COMMANDS["time"].parse_reply(texts)
    assert time_to_acs(timestamp) == 17_000_000_005_000_000


@pytest.mark.parametrize("values", [[], [903.21], [903.21, 1240.57, 0.0, -1.5]])
def test_parse_reply_round_trip_tpi(values):
    for name in ("get-tpi", "get-tp0", "get-rms"):
        assert COMMANDS[name].parse_reply(COMMANDS[name].format_reply(values)) == values


def test_parse_reply_round_trip_integration_and_configuration():
    assert COMMANDS["get-integration"].parse_reply(
        COMMANDS["get-integration"].format_reply(40)) == [40]
    assert COMMANDS["get-configuration"].parse_reply(
        COMMANDS["get-configuration"].format_reply("SK00")) == ["SK00"]
    assert COMMANDS[VERSION].parse_reply(["1.4"]) == ["1.4"]
    assert COMMANDS["start"].parse_reply([]) == []


@pytest.mark.parametrize("name, texts, message", [
    ("status", ["1700000000.5000000", "ok"],
     "reply has 2 values for status: expected timestamp status acquiring"),
    ("start", ["x"], "reply has 1 value for start: expected "),
    ("status", ["1700000000.5000000", "ok", "yes"], "bad value in status reply: yes"),
    ("get-tpi", ["1.0", "nan"], "bad value in get-tpi reply: nan"),
    ("time", ["soon"], "bad value in time reply: invalid timestamp 'soon'"),
])
def test_parse_reply_errors(name, texts, message):
    with pytest.raises(ArgumentError) as caught:
        COMMANDS[name].parse_reply(texts)
    assert str(caught.value) == message


# -- usage -----------------------------------------------------------------------

@pytest.mark.parametrize("name, usage", [
    ("status", "status"),
    ("version", "version"),
    ("set-configuration", "set-configuration,<configuration:text>"),
    ("set-integration", "set-integration,<integration:unsigned>"),
    ("get-tpi", "get-tpi[,<frequency:float>[,<bandwidth:float>]]"),
    ("start", "start[,<timestamp:timestamp>]"),
    ("set-section", "set-section,<section:integer|*>,<start_freq:float|*>,"
                    "<bandwidth:float|*>,<feed:integer|*>,<mode:text|*>,"
                    "<sample_rate:float|*>,<bins:integer|*>"),
    ("cal-on", "cal-on[,<interleave:unsigned>]"),
    ("set-enable", "set-enable,<feed1:integer>,<feed2:integer>"),
    ("set-shift", "set-shift,<shift:integer>"),
])
def test_usage(name, usage):
    assert COMMANDS[name].usage() == usage


# -- the table against docs/protocol.md section 7 ------------------------------------

# (wire name, since), in the order of docs/protocol.md section 7.
PROTOCOL_COMMANDS = [
    ("status", "1.0"), ("version", "1.0"), ("get-configuration", "1.0"),
    ("set-configuration", "1.0"), ("get-integration", "1.0"), ("set-integration", "1.0"),
    ("get-tpi", "1.0"), ("get-tp0", "1.0"), ("get-rms", "client"), ("time", "1.0"),
    ("start", "1.0"), ("stop", "1.0"), ("set-section", "1.0"), ("cal-on", "1.0"),
    ("set-filename", "1.1"), ("convert-data", "1.2"), ("set-enable", "1.3"),
    ("end-schedule", "1.4"), ("backend-park", "1.4"), ("set-shift", "1.4"),
]


@pytest.mark.parametrize("name, since", PROTOCOL_COMMANDS)
def test_every_protocol_command_is_declared(name, since):
    declared = COMMANDS[name]
    assert declared.name == name
    assert declared.since == since
    assert declared.summary


def test_table_holds_exactly_the_protocol_commands_in_order():
    assert list(COMMANDS) == [name for name, _ in PROTOCOL_COMMANDS]


@pytest.mark.parametrize("name", [name for name, _ in PROTOCOL_COMMANDS if name != VERSION])
def test_every_command_method_is_part_of_the_backend_contract(name):
    assert callable(getattr(Backend, COMMANDS[name].method))


def test_version_is_answered_by_the_library():
    assert COMMANDS[VERSION].method is None


@pytest.mark.parametrize("name", ["status", "version", "get-configuration",
                                  "get-integration", "get-tpi", "get-tp0", "get-rms", "time"])
def test_queries_do_not_change_state(name):
    assert not COMMANDS[name].changes_state


@pytest.mark.parametrize("name, reply", [
    ("status", ("timestamp", "status", "acquiring")),
    ("version", ("version",)),
    ("get-configuration", ("configuration",)),
    ("get-integration", ("integration",)),
    ("get-tpi", ("value",)),
    ("time", ("timestamp",)),
])
def test_reply_shapes(name, reply):
    assert tuple(value.name for value in COMMANDS[name].reply) == reply


# -- reason_text -------------------------------------------------------------------

@pytest.mark.parametrize("text, cleaned", [
    ("already acquiring", "already acquiring"),
    ("a,b,c", "a;b;c"),
    ("line one\nline two", "line one line two"),
    ("tab\there", "tab here"),
    ("cr\r\nlf", "cr lf"),
    ("nul\x00esc\x1bdel\x7fbell\x07", "nul esc del bell"),
    ("  lots   of \t\n  space  ", "lots of space"),
    ("\r\n", ""),
    ("", ""),
    (ValueError("bad, value"), "bad; value"),
    (42, "42"),
])
def test_reason_text(text, cleaned):
    assert reason_text(text) == cleaned


def test_reason_text_truncates_to_200_characters():
    assert reason_text("x" * 200) == "x" * 200
    assert reason_text("x" * 201) == "x" * 199 + "…"
    long = reason_text("word " * 100)
    assert len(long) == 200
    assert long.endswith("…")


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_reason_text_is_always_a_safe_reason(text):
    cleaned = reason_text(text)
    assert len(cleaned) <= 200
    assert "," not in cleaned
    assert not any(ord(c) < 32 or c == "\x7f" for c in cleaned)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    reply = grammar.fail("status", cleaned)
    assert grammar.parse_message(str(reply)) == reply


# -- extension commands ------------------------------------------------------------

class SweepBackend(Backend):
    """A backend with one extension command."""

    @command("target-sweep", Argument("points", INTEGER))
    def target_sweep(self, points):
        """Sweep across the target.

        With more details in the rest of the docstring.
        """
        return [points, "done"]


class ReportingBackend(Backend):
    """Extension with an explicit reply shape and summary."""

    @command("get-counts", reply=[ReplyValue("count", INTEGER, repeated=True)],
             summary="the counters", changes_state=False)
    def get_counts(self):
        """Not the summary."""
        return [1, 2]

    @command("noop")
    def noop(self):  # no docstring at all
        return None


def test_extension_command_appears_for_its_backend_only():
    table = commands_of(SweepBackend())
    sweep = table["target-sweep"]
    assert sweep.method == "target_sweep"
    assert sweep.arguments == (Argument("points", INTEGER),)
    assert sweep.since == "extension"
    assert sweep.changes_state
    assert "target-sweep" not in COMMANDS
    assert "target-sweep" not in commands_of(Backend())
    assert "target-sweep" not in commands_of(ReportingBackend())
    assert {name: table[name] for name in COMMANDS} == COMMANDS


def test_extension_command_is_inherited():
    class Subclass(SweepBackend):
        pass
    assert "target-sweep" in commands_of(Subclass())


def test_extension_default_reply_is_repeated_text():
    sweep = commands_of(SweepBackend())["target-sweep"]
    assert sweep.reply == (ReplyValue("value", TEXT, repeated=True),)
    assert sweep.format_reply([10, "done"]) == ["10", "done"]
    assert sweep.format_reply("one") == ["one"]
    assert sweep.format_reply(None) == []
    assert sweep.parse_arguments(["10"]) == [10]
    with pytest.raises(ArgumentError) as caught:
        sweep.parse_arguments(["ten"])
    assert str(caught.value) == "invalid points 'ten': expected an integer"
    assert sweep.usage() == "target-sweep,<points:integer>"


def test_extension_summary_from_docstring_first_line():
    assert commands_of(SweepBackend())["target-sweep"].summary == "Sweep across the target."


def test_extension_explicit_reply_summary_and_state():
    table = commands_of(ReportingBackend())
    counts = table["get-counts"]
    assert counts.summary == "the counters"
    assert not counts.changes_state
    assert counts.format_reply([1, 2]) == ["1", "2"]
    assert table["noop"].summary == ""
    assert table["noop"].arguments == ()


def test_decorated_method_stays_an_ordinary_method():
    assert SweepBackend().target_sweep(3) == [3, "done"]


def test_commands_of_returns_a_copy_and_plain_objects_get_the_standard_table():
    table = commands_of(object())
    assert table == {**COMMANDS, **LIBRARY_COMMANDS}
    assert list(LIBRARY_COMMANDS) == ["help"] and "help" not in COMMANDS  # not the protocol's
    table["extra"] = COMMANDS["status"]
    assert "extra" not in COMMANDS


# -- reply_line: one % operation for native values, the same bytes as format_reply ---

def assert_reply_line_is_generic(command_: Command, result) -> None:
    """reply_line(result) gives the bytes, or the error, of ok_line(format_reply(result))."""
    try:
        expected = grammar.ok_line(command_.name, command_.format_reply(result))
    except (ReplyShapeError, grammar.GrammarException) as error:
        with pytest.raises(type(error)):
            command_.reply_line(result)
    else:
        assert command_.reply_line(result) == expected


_REPLY_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-10 ** 20, max_value=10 ** 20),
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(["ok", "SK00", "a,b", "a b", "\\", "\t", "", "-0", "é"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=9),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(COMMANDS)),
       st.one_of(_REPLY_VALUES, st.tuples(_REPLY_VALUES, _REPLY_VALUES, _REPLY_VALUES),
                 st.tuples(_REPLY_VALUES), st.lists(_REPLY_VALUES, max_size=3)))
def test_reply_line_is_the_formatted_reply_for_any_result(name, result):
    assert_reply_line_is_generic(COMMANDS[name], result)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.tuples(st.just("status"), st.tuples(st.floats(), st.text(max_size=6), st.booleans())),
    st.tuples(st.just("time"), st.floats()),
    st.tuples(st.just("get-integration"), st.integers()),
    st.tuples(st.just("get-configuration"), st.text(max_size=10)),
))
def test_native_values_give_the_formatted_reply(case):
    name, result = case
    assert_reply_line_is_generic(COMMANDS[name], result)


def test_templates_are_derived_from_the_kinds():
    # pylint: disable=protected-access
    assert COMMANDS["status"]._template == "!status,ok,%.7f,%s,%d\r\n"
    assert COMMANDS["get-integration"]._template == "!get-integration,ok,%d\r\n"
    assert COMMANDS["get-tpi"]._template is None  # one value per section
    assert COMMANDS["start"]._template is None  # nothing to report
    assert Command("bad name", "m", reply=(ReplyValue("v", TEXT),))._template is None
    assert all(kind.native is not None
               for kind in (INTEGER, NON_NEGATIVE_INTEGER, FLOAT, TEXT, WORD, BOOLEAN,
                            TIMESTAMP))


@pytest.mark.parametrize("result, line", [
    ((1700000000.1234567, "ok", False), b"!status,ok,1700000000.1234567,ok,0\r\n"),
    ((1700000000, "ok", True), b"!status,ok,1700000000.0000000,ok,1\r\n"),
    ((-0.0, "ok", True), b"!status,ok,0.0000000,ok,1\r\n"),
    ((1.5, "a,b", 1), b"!status,ok,1.5000000,a\\,b,1\r\n"),
])
def test_status_reply_lines(result, line):
    assert COMMANDS["status"].reply_line(result) == line


@pytest.mark.parametrize("result", [(-1.0, "ok", False), (math.inf, "ok", False),
                                    (True, "ok", False), (1.0, "two words", False),
                                    (1.0, "ok", 2)])
def test_status_reply_line_never_lets_a_bad_value_through(result):
    with pytest.raises(ReplyShapeError):
        COMMANDS["status"].reply_line(result)


# -- linear-time parsing: the float pattern reads each character one way -------------

_QUADRATIC_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.from_regex(_QUADRATIC_FLOAT, fullmatch=True),
    st.text(alphabet="0123456789.eE+-x ", max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
))
def test_the_float_pattern_accepts_what_the_old_one_did(text):
    # pylint: disable=protected-access
    from discosbackend import commands as commands_module
    assert bool(commands_module._FLOAT_RE.fullmatch(text)) == bool(
        _QUADRATIC_FLOAT.fullmatch(text))


@pytest.mark.parametrize("kind", [FLOAT, INTEGER, TIMESTAMP])
def test_a_64_kib_number_that_is_not_one_is_refused(kind):
    with pytest.raises(ValueError):
        kind.parse("1" * 65_000 + "x")
    with pytest.raises(ValueError):
        kind.parse("1." + "1" * 65_000 + "e")


# -- protocol versions -------------------------------------------------------

def test_the_library_speaks_the_last_published_version():
    assert PROTOCOL_VERSIONS[-1] == __protocol_version__
    assert check_protocol_version("1.2") == "1.2"
    with pytest.raises(ValueError, match="unknown protocol version '1.5': the versions are "
                                         "1.0, 1.1, 1.2, 1.3, 1.4"):
        check_protocol_version("1.5")


@pytest.mark.parametrize("version, newest", [
    ("1.0", "cal-on"), ("1.1", "set-filename"), ("1.2", "convert-data"),
    ("1.3", "set-enable"), ("1.4", "set-shift")])
def test_a_version_has_the_commands_since_it_and_before(version, newest):
    table = {name: entry for name, entry in commands_of(Backend(), version).items()
             if name not in LIBRARY_COMMANDS}
    assert newest in table
    assert all(COMMANDS[name].since in (CLIENT, *PROTOCOL_VERSIONS[:PROTOCOL_VERSIONS.index(
        version) + 1]) for name in table)
    later = {name for name, entry in COMMANDS.items()
             if entry.since in PROTOCOL_VERSIONS[PROTOCOL_VERSIONS.index(version) + 1:]}
    assert later.isdisjoint(table) and set(table) | later == set(COMMANDS)


def test_get_rms_follows_the_client_commands_flag_not_the_version():
    assert COMMANDS["get-rms"].since == CLIENT
    assert "get-rms" in commands_of(Backend(), "1.0")
    assert "get-rms" not in commands_of(Backend(), "1.4", client_commands=False)
    assert commands_of(Backend()) == {**COMMANDS, **LIBRARY_COMMANDS}  # no version: all


def test_served_in_a_version_the_library_does_not_know():
    set_shift = COMMANDS["set-shift"]
    assert set_shift.served_in(None) and set_shift.served_in("2.0")
    assert set_shift.served_in("garbled") and not set_shift.served_in("1.3.9")
    assert Command("x", "x", since=EXTENSION).served_in("1.0")
    with pytest.raises(ValueError):
        commands_of(Backend(), "9.9")


def test_extensions_are_served_in_every_version():
    class Extended(Backend):
        @command("target-sweep")
        def sweep(self):
            """Sweep."""

    assert "target-sweep" in commands_of(Extended(), "1.0")


def test_reply_values_fit_a_count():
    assert [value.name for value in COMMANDS["get-tpi"].reply_values(3)] == ["value"] * 3
    assert COMMANDS["status"].reply_values(3) == COMMANDS["status"].reply
    with pytest.raises(ArgumentError, match="reply has 2 values for status"):
        COMMANDS["status"].reply_values(2)
