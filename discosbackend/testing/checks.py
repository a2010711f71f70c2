"""The conformance checks: each one behaviour of docs/protocol.md, declared once.

Both :class:`~discosbackend.testing.BackendTestCase` (one test per check)
and ``discos-backend check`` (one report line per check) run these.  A
check is an ``async`` function of a connected
:class:`~discosbackend.testing.session.Session` that raises
:class:`~discosbackend.testing.session.CheckFailed` with what it sent,
what came back and what was expected.

Checks marked ``changes_state`` send commands the command table marks as
changing the backend's state (``set-*``, ``start``, ``stop``, ...); the
others are read-only, and the session enforces it.  State-changing checks
leave the backend idle (they send ``?stop`` at the end, whatever happened).

Every request DISCOS sends must be accepted: ``set-enable``, ``set-shift``,
``set-filename``, ``convert-data``, ``end-schedule`` and ``backend-park``
included.  A backend that cannot do one of them should still answer
``ok``, or list the check in ``skip_checks`` knowing that DISCOS will see a
``fail``.

Some checks hold a backend to what the real DISCOS client needs rather
than to the protocol's text: replies under 512 bytes and never empty, as
many ``get-tpi``/``get-rms`` values as the configuration has inputs, and
the whole sessions of the real Sardara and SKARAB clients at SRT
(:data:`SARDARA_SESSION`, :data:`SKARAB_SESSION`).  Their failures say why
(``CheckFailed.why``).  A ``fail`` to one of :data:`ABORTING_COMMANDS`, for
a request a schedule sends, is a :class:`DiscosAborts`: the real client's
component ends on it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Coroutine

from twisted.internet import defer, task

from discosbackend.commands import COMMANDS, INTEGER
from discosbackend.conformance import (framing_problem, is_version_reply, ok_values_problem,
                                       parse_raw, show, show_lines)
from discosbackend.configurations import Configuration, srt
from discosbackend.grammar import FAIL, INVALID, OK
from discosbackend.testing.session import Answer, CheckFailed, DiscosAborts, Session
from discosbackend.timediscos import TICKS_PER_SECOND
from discosbackend.wording import counted

__all__ = ["Check", "CHECKS", "CHECK_NAMES", "check_named", "TIMED_EARLINESS",
           "REAL_CLIENT_FILENAME", "ABORTING_COMMANDS", "MAX_REPLY_BYTES", "SARDARA_SESSION",
           "SKARAB_SESSION"]

#: Seconds before its time that a time-tagged start or stop may show (clock jitter).
TIMED_EARLINESS = 0.05
#: Seconds between two ``?status`` polls while waiting for a time-tagged start or stop.
_POLL = 0.05
#: The metadata file name of the real client's session (docs/protocol.md, section 8).
REAL_CLIENT_FILENAME = "/archive/data/20250110/20250110-101012-P-Src_001_001.fits"
#: ``set-section`` as the real client sends it: integer mode, iostream floats.
_SECTION = ("0", "100", "1500", "0", "0", "3000", "1024")
_UNCONFIGURED = "unconfigured"

#: The commands whose ``fail`` the real DISCOS client does not handle.
ABORTING_COMMANDS = frozenset({"set-integration", "cal-on", "set-enable", "set-shift"})
#: The longest reply line, CR LF included, that the real client's 512-byte buffer takes.
MAX_REPLY_BYTES = 511
_WHY_ABORTS = ("the real DISCOS client does not handle a fail to {name}: its component "
               "ends (refuse only values no schedule sends)")
_WHY_LONG = ("the real DISCOS client reads each reply into a 512-byte buffer with no bounds "
             "check")
_WHY_COUNT = ("the real DISCOS client reads exactly as many values as the configuration has "
              "inputs: fewer leave values unset (GET-TPI errors) and extra ones are ignored")
#: The commands answering one value per input.
_PER_INPUT = ("get-tpi", "get-rms")
#: What the real client reads, over and over, while DISCOS runs.
_DISCOS_READS: tuple[tuple[str, ...], ...] = (
    ("status",), ("time",), ("version",), ("get-configuration",), ("get-integration",),
    ("get-tpi", "0", "0"), ("get-rms",))


def _set_sections(count: int, bandwidth: float, bins: int) -> tuple[tuple[str, ...], ...]:
    """``set-section`` of every section as the real client sends it: feed pairs, L then R."""
    return tuple(("set-section", str(index), "100", f"{bandwidth:g}", str(index // 2),
                  str(index % 2), f"{2 * bandwidth:g}", str(bins)) for index in range(count))


#: The requests of a whole session of the real Sardara client at SRT, in
#: order: the 7-feed K-band configuration SK77 (14 inputs), calibration,
#: then nodding between feeds 2 and 3 (4 inputs, even for one feed twice),
#: with settings changed while acquiring as a schedule does.
SARDARA_SESSION: tuple[tuple[str, ...], ...] = (
    ("set-configuration", "SK77"), ("set-integration", "40"),
    *_set_sections(14, 1500, 1024),
    ("status",), ("time",), ("get-configuration",),
    ("get-tpi", "0", "0"),  # the zero level: get-tp0 is never sent
    ("cal-on", "10"), ("get-tpi", "0", "0"), ("cal-on",), ("get-tpi", "0", "0"), ("get-rms",),
    ("set-enable", "2", "3"), ("get-tpi", "0", "0"), ("get-rms",),
    ("start",), ("status",), ("time",), ("set-integration", "40"), ("cal-on", "10"),
    ("get-tpi", "0", "0"), ("cal-on",), ("set-enable", "3", "2"), ("get-tpi", "0", "0"),
    ("get-rms",), ("stop",), ("set-filename", REAL_CLIENT_FILENAME),
    ("set-enable", "3", "3"), ("get-tpi", "0", "0"), ("get-rms",),
    ("start",), ("set-enable", "2", "3"), ("get-tpi", "0", "0"), ("status",), ("stop",),
    ("set-filename", REAL_CLIENT_FILENAME.replace("_001.fits", "_002.fits")),
)
#: The requests of a whole session of the real SKARAB client at SRT with the
#: 7-feed K-band receiver, in order: SKARAB_1 (2 inputs), ``set-enable,7,7``
#: (all feeds) repeated, settings changed while acquiring, nodding between
#: two feeds (4 inputs) and on one (2), the end of the schedule and park.
SKARAB_SESSION: tuple[tuple[str, ...], ...] = (
    ("set-configuration", "SKARAB_1"), ("set-integration", "40"),
    ("set-section", "-1", "100", "1400", "0", "0", "2800", "2048"),
    *_set_sections(2, 1400, 2048),
    ("set-shift", "3"), ("set-enable", "7", "7"), ("get-tpi", "0", "0"), ("get-rms",),
    ("status",), ("time",), ("cal-on", "10"), ("get-tpi", "0", "0"), ("cal-on",),
    ("start",), ("status",), ("set-integration", "40"), ("set-enable", "7", "7"),
    ("set-shift", "3"), ("cal-on", "10"), ("cal-on",), ("get-tpi", "0", "0"), ("get-rms",),
    ("stop",), ("set-filename", REAL_CLIENT_FILENAME),
    ("set-enable", "0", "3"), ("get-tpi", "0", "0"), ("get-rms",),
    ("start",), ("set-enable", "2", "2"), ("get-tpi", "0", "0"), ("get-rms",), ("stop",),
    ("set-filename", REAL_CLIENT_FILENAME.replace("_001.fits", "_002.fits")),
    ("set-enable", "7", "7"), ("get-tpi", "0", "0"), ("end-schedule",), ("backend-park",),
)

Body = Callable[[Session], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Check:
    """One conformance check: ``name`` reads as a sentence, ``sentence`` says it in full."""

    name: str
    sentence: str
    changes_state: bool
    body: Body

    def run(self, session: Session) -> defer.Deferred[None]:
        """Run the check on ``session``; fails with ``CheckFailed`` if the server misbehaves."""
        return defer.Deferred.fromCoroutine(self.body(session))


_DECLARED: list[Check] = []


def _check(sentence: str, *, changes_state: bool = False,
           acquires: bool = False) -> Callable[[Body], Body]:
    """Declare the decorated coroutine function as a check named after it.

    A check that ``acquires`` starts from an idle backend and leaves it idle:
    ``?stop`` is sent (its reply ignored) before and after it, whatever happens.
    """
    def declare(body: Body) -> Body:
        run = _from_idle_to_idle(body) if acquires else body
        _DECLARED.append(Check(body.__name__, sentence, changes_state or acquires, run))
        return body
    return declare


def _from_idle_to_idle(body: Body) -> Body:
    """``body`` preceded and followed by a ``?stop`` whose reply is ignored."""
    @functools.wraps(body)
    async def run(session: Session) -> None:
        await _quietly(session, "stop")
        try:
            await body(session)
        finally:
            await _quietly(session, "stop")
    return run


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _shape(name: str) -> str:
    """The ``ok`` reply of ``name`` as the table declares it, e.g. ``!time,ok,<timestamp>``."""
    values = [f"<{value.name}>" + ("..." if value.repeated else "")
              for value in COMMANDS[name].reply]
    return "!" + ",".join([name, OK, *values])


def _now(session: Session) -> float:
    return session.reactor.seconds()


def _ticks(seconds: float) -> str:
    """Unix seconds as ACS ticks, the way the real client sends a time."""
    return str(round(seconds * TICKS_PER_SECOND))


async def _ok(session: Session, name: str, *arguments: str, why: str = "") -> Answer:
    """``?name,arguments`` answered ``ok``; a ``fail`` the real client cannot take aborts."""
    answer = await session.request(name, *arguments)
    if answer.code == FAIL and name in ABORTING_COMMANDS:
        raise DiscosAborts(show(answer.sent), show(answer.raw), _shape(name) + why,
                           _WHY_ABORTS.format(name=name))
    if answer.code != OK:
        raise answer.mismatch(_shape(name) + why)
    return answer


def _fits(answer: Answer) -> None:
    """The reply is short enough for the real client's buffer."""
    if len(answer.raw) > MAX_REPLY_BYTES:
        raise CheckFailed(show(answer.sent), show(answer.raw),
                          f"a reply of at most {MAX_REPLY_BYTES} bytes with its CR LF, "
                          f"not {len(answer.raw)}", _WHY_LONG)


async def _restore_configuration(session: Session, before: Answer, current: str) -> None:
    """Set the configuration ``before`` reported again, unless it is ``current`` or none."""
    previous = before.arguments[0] if len(before.arguments) == 1 else _UNCONFIGURED
    if previous not in (current, _UNCONFIGURED):
        await _quietly(session, "set-configuration", previous)


async def _refused(session: Session, code: str, name: str, *arguments: str) -> Answer:
    answer = await session.request(name, *arguments)
    if answer.code != code:
        raise answer.mismatch(f"!{name},{code},<reason>")
    return answer


async def _quietly(session: Session, name: str, *arguments: str) -> None:
    """Send a request and ignore what comes back, or that nothing does."""
    try:
        await session.request(name, *arguments)
    except CheckFailed:
        pass


async def _ok_shaped(session: Session, name: str, *arguments: str, why: str = "") -> Answer:
    """``?name,arguments`` answered ``ok`` with the values the command table declares."""
    answer = await _ok(session, name, *arguments, why=why)
    problem = ok_values_problem(COMMANDS[name], answer.arguments)
    if problem is not None:
        raise answer.mismatch(f"{_shape(name)}: {problem}")
    return answer


def _near_now(session: Session, answer: Answer, text: str, shape: str) -> float:
    """The reply timestamp ``text`` (already valid), which must be near our clock."""
    value = float(text)
    now = _now(session)
    tolerance = session.settings.time_tolerance
    if abs(value - now) > tolerance:
        raise answer.mismatch(f"{shape}: a timestamp within {tolerance:g} s of our clock "
                              f"({now:.7f}); it is {value - now:+.3f} s off")
    return value


async def _status(session: Session) -> tuple[Answer, float, bool]:
    """``?status``, checked: the answer, its timestamp and the acquiring flag."""
    answer = await _ok_shaped(session, "status")
    stamp, _, acquiring = answer.arguments
    return answer, _near_now(session, answer, stamp, _shape("status")), acquiring == "1"


async def _expect_acquiring(session: Session, want: bool, before: list[Answer]) -> None:
    status, _, acquiring = await _status(session)
    if acquiring != want:
        raise CheckFailed(show_lines([answer.sent for answer in before] + [status.sent]),
                          show(status.raw), f"{_shape('status')} with acquiring {int(want)}")


async def _per_section(session: Session, name: str, *arguments: str,
                       wanted: int | None = None, why: str = "") -> tuple[Answer, int]:
    """``?name,arguments`` answering one float per section: the answer and the count."""
    answer = await _ok_shaped(session, name, *arguments, why=why)
    shape = _shape(name)
    values = answer.arguments
    if not values:
        raise answer.mismatch(f"{shape}: at least one value, one per section")
    if wanted is not None and len(values) != wanted:
        raise answer.mismatch(f"{shape}: {counted(wanted, 'value')}, one per section")
    return answer, len(values)


async def _same_count(session: Session, name: str, forms: list[tuple[str, ...]],
                      compare_with: str | None = None) -> None:
    """Every form of ``name`` answers per section, all with the same count.

    With ``compare_with``, the count must also match that command's (when
    it answers ``ok``; its own check reports it otherwise).
    """
    answers = [await _per_section(session, name, *form, wanted=session.settings.sections)
               for form in forms]
    if compare_with is not None:
        other = await session.request(compare_with)
        if other.code == OK and other.arguments:
            answers.insert(0, (other, len(other.arguments)))
    counts = {count for _, count in answers}
    if len(counts) > 1:
        raise CheckFailed(show_lines([answer.sent for answer, _ in answers]),
                          show_lines([answer.raw for answer, _ in answers]),
                          "the same number of values (one per section) in each reply")


def _expect_count(exchanges: list[Answer], found: int, count: int | None, what: str) -> None:
    """The last of ``exchanges`` gave ``count`` values (when known): one per input of ``what``."""
    if count is not None and found != count:
        last = exchanges[-1]
        raise CheckFailed(show_lines([answer.sent for answer in exchanges]), show(last.raw),
                          f"{_shape(last.message.name)}: {count} values, one per input of "
                          f"{what}", _WHY_COUNT)


async def _replay(session: Session, steps: tuple[tuple[str, ...], ...], who: str) -> None:
    """Send ``steps`` in order, each answered ``ok``, short, with the count the client reads."""
    table = srt()
    configuration: Configuration | None = None
    context: list[Answer] = []  # the set-configuration and set-enable the count follows
    enabled: tuple[int, int] | None = None
    for number, (name, *arguments) in enumerate(steps, 1):
        why = f" (step {number} of {len(steps)} of the real {who} session)"
        if name in _PER_INPUT:
            answer, found = await _per_section(session, name, *arguments, why=why)
        else:
            answer = await _ok(session, name, *arguments, why=why)
        _fits(answer)
        if name == "set-configuration":
            configuration, context, enabled = table[arguments[0]], [answer], None
        elif name == "set-enable":
            context, enabled = context[:1] + [answer], (int(arguments[0]), int(arguments[1]))
        elif name in _PER_INPUT:
            assert configuration is not None  # every session starts with set-configuration
            what = configuration.name + (f" after set-enable,{enabled[0]},{enabled[1]}"
                                         if enabled else "")
            _expect_count(context + [answer], found, configuration.count(enabled), what)


async def _invalid_line(session: Session, line: bytes) -> None:
    raw = await session.exchange(line)
    message = parse_raw(raw)
    if message is None or not message.is_reply() or message.code != INVALID:
        raise CheckFailed(show(line), show(raw), "!<name>,invalid,<reason>")


async def _clock_offset(session: Session) -> float:
    """How far ahead of ours the backend's clock is, in seconds (from ``?time``)."""
    before = _now(session)
    answer = await _ok_shaped(session, "time")
    after = _now(session)
    stamp = _near_now(session, answer, answer.arguments[0], _shape("time"))
    return stamp - (before + after) / 2


async def _happens_at(session: Session, tagged: Answer, want: bool, at: float,
                      offset: float) -> None:
    """Poll ``status`` until acquiring is ``want``: not before ``at``, not much after."""
    lateness = session.settings.timed_lateness
    give_up = at - offset + lateness  # on our clock: the backend's may be stuck
    while True:
        status, stamp, acquiring = await _status(session)
        if acquiring == want:
            if stamp < at - TIMED_EARLINESS:
                raise CheckFailed(show_lines([tagged.sent, status.sent]), show(status.raw),
                                  f"acquiring {int(not want)} until {at:.7f}, the time sent")
            return
        if _now(session) > give_up:
            raise CheckFailed(show_lines([tagged.sent, status.sent]), show(status.raw),
                              f"acquiring {int(want)} by {at + lateness:.7f}, "
                              f"{lateness:g} s after the time sent")
        await task.deferLater(session.reactor, _POLL, lambda: None)


# --------------------------------------------------------------------------
# Read-only checks
# --------------------------------------------------------------------------

@_check("On connecting, the server at once sends the version reply, !version,ok,<version>, "
        "ending in CR LF.")
async def greeting_is_the_version_reply_ending_in_cr_lf(session: Session) -> None:
    """The greeting."""
    expected = f"{_shape('version')} ending in CR LF, sent at once on connecting"
    greeting = session.greeting
    if greeting is None:
        raise CheckFailed("(nothing: connected and waited)",
                          f"nothing within {session.settings.greeting_timeout:g} s", expected)
    if framing_problem(greeting) is not None or not is_version_reply(parse_raw(greeting)):
        raise CheckFailed("(nothing: connected)", show(greeting), expected)


@_check("The reply to ?version is the greeting, byte for byte.")
async def version_reply_matches_the_greeting(session: Session) -> None:
    """Version and greeting."""
    raw = await session.exchange(b"?version")
    if session.greeting is None:
        raise CheckFailed("?version", show(raw), "the same line as the greeting, but no "
                                                 "greeting came")
    if raw != session.greeting:
        raise CheckFailed("?version", show(raw),
                          f"{show(session.greeting)}, the greeting, byte for byte")


@_check("Every reply ends with CR LF, errors included.")
async def every_reply_ends_with_cr_lf(session: Session) -> None:
    """CR LF on every kind of reply."""
    for line in (b"?status", b"?version", b"?get-tpi", b"?no-such-command", b"?status,1",
                 b"?bad\\q", b"!status,ok", b""):
        raw = await session.exchange(line)
        if framing_problem(raw) is not None:
            raise CheckFailed(show(line), show(raw), "one reply line ending in CR LF")


@_check("Lines sent back to back, junk included, get exactly one reply each, in order.")
async def each_line_gets_exactly_one_reply_in_order(session: Session) -> None:
    """One reply per line."""
    lines = [b"?status", b"hello there", b"?no-such-command", b"", b"?version,1"]
    names = ["status", None, "no-such-command", None, "version"]
    replies = await session.exchange_all(lines)
    for raw, name in zip(replies, names):
        message = parse_raw(raw)
        if message is None or not message.is_reply() or name not in (None, message.name):
            raise CheckFailed(show_lines(lines), show_lines(replies),
                              "one reply per line in order: !status,... | !<name>,invalid,... "
                              "| !no-such-command,invalid,... | !<name>,invalid,... "
                              "| !version,fail,...")
    answer = await session.request("version")
    if answer.code != OK:
        raise CheckFailed(show_lines(lines + [answer.sent]),
                          show_lines(replies + [answer.raw]),
                          f"then {_shape('version')} for the last line, nothing more")


@_check("?status answers a timestamp near now (unix seconds, 7 decimals), one status word "
        "and the acquiring flag 1 or 0.")
async def status_reply_has_a_timestamp_a_word_and_a_flag(session: Session) -> None:
    """Status shape."""
    await _status(session)


@_check("?time answers one timestamp near now, in unix seconds with 7 decimals.")
async def time_reply_is_a_timestamp_near_now(session: Session) -> None:
    """Time shape."""
    answer = await _ok_shaped(session, "time")
    _near_now(session, answer, answer.arguments[0], _shape("time"))


@_check("?get-configuration answers one configuration id.")
async def get_configuration_replies_one_id(session: Session) -> None:
    """Configuration shape."""
    await _ok_shaped(session, "get-configuration")


@_check("?get-integration answers one integer, the integration time in ms, 0 or more.")
async def get_integration_replies_milliseconds(session: Session) -> None:
    """Integration shape."""
    answer = await _ok_shaped(session, "get-integration")
    if int(answer.arguments[0]) < 0:
        raise answer.mismatch(f"{_shape('get-integration')}: one integer >= 0")


@_check("?get-tpi and ?get-tpi,0,0 answer one number per section.")
async def get_tpi_replies_one_float_per_section(session: Session) -> None:
    """Total power shape."""
    await _same_count(session, "get-tpi", [(), ("0", "0")])


@_check("?get-tp0 and ?get-tp0,0,0 answer one number per section, as many as ?get-tpi.")
async def get_tp0_replies_one_float_per_section(session: Session) -> None:
    """Zero level shape."""
    await _same_count(session, "get-tp0", [(), ("0", "0")], compare_with="get-tpi")


@_check("?get-rms answers one number per section, as many as ?get-tpi.")
async def get_rms_replies_one_float_per_section(session: Session) -> None:
    """Rms shape."""
    await _same_count(session, "get-rms", [()], compare_with="get-tpi")


@_check("Every reply to what DISCOS reads while it runs (?status, ?time, ?get-tpi,0,0...) "
        "is at most 511 bytes with its CR LF: the real client's buffer holds 512.")
async def every_reply_is_under_512_bytes(session: Session) -> None:
    """Reply size."""
    for name, *arguments in _DISCOS_READS:
        _fits(await session.request(name, *arguments))


@_check("No reply to what DISCOS reads while it runs is an empty line: the real client "
        "takes one for a lost connection.")
async def no_reply_is_an_empty_line(session: Session) -> None:
    """Empty lines (the session refuses them, saying why)."""
    for name, *arguments in _DISCOS_READS:
        await session.request(name, *arguments)


@_check("A command given more arguments than it takes is refused with fail.")
async def extra_arguments_are_refused_with_fail(session: Session) -> None:
    """Wrong count, read-only commands."""
    for name, *arguments in (("status", "1"), ("version", "1"), ("time", "1"),
                             ("get-rms", "1"), ("get-tpi", "0", "0", "0")):
        await _refused(session, FAIL, name, *arguments)


@_check("An unknown command is answered invalid.")
async def an_unknown_command_is_invalid(session: Session) -> None:
    """Unknown command."""
    await _refused(session, INVALID, "no-such-command")


@_check("A line that breaks the grammar (bad escape, bad name, no '?', control character, "
        "empty) is answered invalid.")
async def a_line_that_breaks_the_grammar_is_invalid(session: Session) -> None:
    """Grammar errors."""
    for line in (b"?bad\\q", b"?status\\", b"?9lives", b"?", b"status", b"?status,a\x00b",
                 b""):
        await _invalid_line(session, line)


@_check("A line starting with '!' (a reply sent to the server) is answered invalid.")
async def a_line_starting_with_bang_is_invalid(session: Session) -> None:
    """Replies are not requests."""
    await _invalid_line(session, b"!status,ok")


# --------------------------------------------------------------------------
# State-changing checks
# --------------------------------------------------------------------------

@_check("After ?set-configuration,<id>, ?get-configuration answers that id.",
        changes_state=True)
async def set_configuration_round_trips(session: Session) -> None:
    """Configuration round trip."""
    wanted = session.settings.configuration
    before = await _ok(session, "get-configuration")
    sent = await _ok(session, "set-configuration", wanted)
    after = await _ok(session, "get-configuration")
    if after.arguments != [wanted]:
        raise CheckFailed(show_lines([sent.sent, after.sent]), show(after.raw),
                          f"!get-configuration,ok,{wanted}, as set")
    await _restore_configuration(session, before, wanted)


@_check("After ?set-integration,<ms>, ?get-integration answers that time.", changes_state=True)
async def set_integration_round_trips(session: Session) -> None:
    """Integration round trip."""
    wanted = session.settings.integration
    before = await _ok(session, "get-integration")
    sent = await _ok(session, "set-integration", str(wanted))
    after = await _ok(session, "get-integration")
    try:
        same = len(after.arguments) == 1 and INTEGER.parse(after.arguments[0]) == wanted
    except ValueError:
        same = False
    if not same:
        raise CheckFailed(show_lines([sent.sent, after.sent]), show(after.raw),
                          f"!get-integration,ok,{wanted}, as set")
    if len(before.arguments) == 1 and before.arguments[0] not in ("0", str(wanted)):
        await _quietly(session, "set-integration", before.arguments[0])


@_check("?set-section as DISCOS sends it (integer mode, iostream numbers) is accepted.",
        changes_state=True)
async def set_section_accepts_what_discos_sends(session: Session) -> None:
    """set-section, real client form."""
    await _ok(session, "set-section", *_SECTION)


@_check("?set-section with * for every value but the section is accepted.", changes_state=True)
async def set_section_accepts_wildcards(session: Session) -> None:
    """set-section wildcards."""
    await _ok(session, "set-section", "0", *["*"] * 6)


@_check("?set-section with fewer or more than 7 arguments is refused with fail.",
        changes_state=True)
async def set_section_refuses_a_wrong_number_of_arguments(session: Session) -> None:
    """set-section count."""
    await _refused(session, FAIL, "set-section", "1", "2")
    await _refused(session, FAIL, "set-section", *_SECTION, "5")


@_check("?set-integration with a value that is not an integer is refused with fail.",
        changes_state=True)
async def set_integration_refuses_a_non_integer(session: Session) -> None:
    """Wrong type."""
    await _refused(session, FAIL, "set-integration", "abc")


@_check("?cal-on,10 and ?cal-on with no interleave are accepted.", changes_state=True)
async def cal_on_accepts_an_interleave_and_none(session: Session) -> None:
    """cal-on forms; ends with the mark off."""
    await _ok(session, "cal-on", "10")
    await _ok(session, "cal-on")


@_check("?cal-on with a negative interleave is refused with fail.", changes_state=True)
async def cal_on_refuses_a_negative_interleave(session: Session) -> None:
    """Negative interleave."""
    await _refused(session, FAIL, "cal-on", "-1")


@_check("?set-enable,0,0 and ?set-enable,7,7 (all feeds, as the real SKARAB client sends it) "
        "are accepted.", changes_state=True)
async def set_enable_is_accepted(session: Session) -> None:
    """set-enable; ends with every feed enabled."""
    await _ok(session, "set-enable", "0", "0")
    await _ok(session, "set-enable", "7", "7")


@_check("?set-shift,3 and ?set-shift,0 are accepted.", changes_state=True)
async def set_shift_is_accepted(session: Session) -> None:
    """set-shift; ends at 0."""
    await _ok(session, "set-shift", "3")
    await _ok(session, "set-shift", "0")


@_check("?set-filename with an absolute path, as DISCOS sends after every subscan, "
        "is accepted.", changes_state=True)
async def set_filename_accepts_an_absolute_path(session: Session) -> None:
    """set-filename."""
    await _ok(session, "set-filename", REAL_CLIENT_FILENAME)


@_check("?convert-data is accepted.", changes_state=True)
async def convert_data_is_accepted(session: Session) -> None:
    """convert-data."""
    await _ok(session, "convert-data")


@_check("?end-schedule is accepted.", changes_state=True)
async def end_schedule_is_accepted(session: Session) -> None:
    """end-schedule."""
    await _ok(session, "end-schedule")


@_check("?backend-park is accepted.", changes_state=True)
async def backend_park_is_accepted(session: Session) -> None:
    """backend-park."""
    await _ok(session, "backend-park")


@_check("?start with a timestamp that is not a positive time (abc, 0, -5) is refused "
        "with fail.", acquires=True)
async def start_refuses_a_malformed_timestamp(session: Session) -> None:
    """Bad timestamps."""
    for timestamp in ("abc", "0", "-5"):
        await _refused(session, FAIL, "start", timestamp)


@_check("?start with a time an hour ago (ACS ticks) is refused with fail.", acquires=True)
async def start_refuses_a_past_timestamp(session: Session) -> None:
    """Past timestamp."""
    await _refused(session, FAIL, "start", _ticks(_now(session) - 3600))


@_check("?start sets the acquiring flag of ?status and ?stop clears it.", acquires=True)
async def start_and_stop_toggle_the_acquiring_flag(session: Session) -> None:
    """Start and stop."""
    await _expect_acquiring(session, False, [])
    start = await _ok(session, "start")
    await _expect_acquiring(session, True, [start])
    stop = await _ok(session, "stop")
    await _expect_acquiring(session, False, [stop])


@_check("?start while acquiring is refused with fail.", acquires=True)
async def start_while_acquiring_fails(session: Session) -> None:
    """Start twice."""
    await _ok(session, "start")
    await _refused(session, FAIL, "start")


@_check("?stop while idle, with nothing pending, is refused with fail.", changes_state=True)
async def stop_while_idle_fails(session: Session) -> None:
    """Stop when idle."""
    await _quietly(session, "stop")
    await _refused(session, FAIL, "stop")


@_check("A ?start and then a ?stop tagged a moment ahead (ACS ticks) take effect at their "
        "time, not before.", acquires=True)
async def time_tagged_start_and_stop_happen_on_time(session: Session) -> None:
    """Time-tagged start and stop."""
    offset = await _clock_offset(session)
    for name, want in (("start", True), ("stop", False)):
        at = _now(session) + offset + session.settings.timed_delay
        tagged = await _ok(session, name, _ticks(at))
        await _happens_at(session, tagged, want, at, offset)


@_check("After ?set-configuration, ?get-tpi,0,0 and ?get-rms answer one value per input of "
        "the configuration (SK77: 14), as many as the real DISCOS client reads.",
        changes_state=True)
async def get_tpi_and_get_rms_follow_the_configuration(session: Session) -> None:
    """Counts per configuration: every one of a declared table, else the one configured."""
    declared = session.settings.configurations
    table = declared if declared is not None else srt()
    names = list(declared) if declared is not None else [session.settings.configuration]
    before = await _ok(session, "get-configuration")
    for name in names:
        configured = await _ok(session, "set-configuration", name)
        expected = table[name].count() if name in table else None
        for request in (("get-tpi", "0", "0"), ("get-rms",)):
            answer, found = await _per_section(session, *request)
            _expect_count([configured, answer], found, expected, name)
            expected = found  # get-rms gives as many as get-tpi
    await _restore_configuration(session, before, names[-1])


@_check("?set-integration, ?cal-on, ?set-enable and ?set-shift are accepted while acquiring, "
        "as a schedule sends them: the real DISCOS client ends on a fail to any of them.",
        acquires=True)
async def discos_settings_are_accepted_while_acquiring(session: Session) -> None:
    """The four commands DISCOS cannot see refused, while acquiring."""
    start = await _ok(session, "start")
    await _expect_acquiring(session, True, [start])
    for name, *arguments in (("set-integration", str(session.settings.integration)),
                             ("cal-on", "10"), ("cal-on",), ("set-enable", "0", "0"),
                             ("set-shift", "3"), ("set-shift", "0")):
        await _ok(session, name, *arguments, why=" (while acquiring)")


@_check("The real Sardara client's whole session at SRT (SK77: 14 inputs; nodding: 4, even "
        "on one feed) is answered ok, acquiring included, with the counts it reads.",
        acquires=True)
async def the_real_sardara_session_is_accepted(session: Session) -> None:
    """Sardara at SRT."""
    await _replay(session, SARDARA_SESSION, "Sardara")


@_check("The real SKARAB client's whole session at SRT (SKARAB_1: 2 inputs; set-enable,7,7 "
        "for all feeds; nodding: 4 on two feeds, 2 on one) is answered ok, acquiring "
        "included, with the counts it reads.", acquires=True)
async def the_real_skarab_session_is_accepted(session: Session) -> None:
    """SKARAB at SRT."""
    await _replay(session, SKARAB_SESSION, "SKARAB")


@_check("The real client's session of docs/protocol.md section 8 is accepted, in order.",
        acquires=True)
async def the_real_client_session_is_accepted(session: Session) -> None:
    """The session of docs/protocol.md section 8."""
    settings = session.settings
    steps: list[tuple[str, ...]] = [
        ("set-configuration", settings.configuration),
        ("set-integration", str(settings.integration)),
        ("set-section", *_SECTION),
        ("cal-on", "10"),
        ("get-tpi", "0", "0"),
        ("status",),
        ("start",),
        ("stop",),
        ("set-filename", REAL_CLIENT_FILENAME),
    ]
    for number, (name, *arguments) in enumerate(steps, 1):
        await _ok(session, name, *arguments,
                  why=f" (step {number} of {len(steps)} of the session)")


#: Every check, in the order they run: read-only ones first.
CHECKS: tuple[Check, ...] = tuple(sorted(_DECLARED, key=lambda declared: declared.changes_state))
#: The names of :data:`CHECKS`, in order.
CHECK_NAMES: tuple[str, ...] = tuple(declared.name for declared in CHECKS)
_BY_NAME = {declared.name: declared for declared in CHECKS}


def check_named(name: str) -> Check:
    """The check called ``name`` (a leading ``test_`` is ignored); ``KeyError`` if none."""
    return _BY_NAME[name[5:] if name.startswith("test_") and name not in _BY_NAME else name]
