"""Unit tests of the backend simulator, its faults and its control handler.

Everything runs on a ``task.Clock`` (advanced to a realistic date) and, for
the wire-level checks, a ``StringTransport``: no sockets, no sleeping.
"""

from __future__ import annotations

import math

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from discosbackend.configurations import ConfigurationError, parse, srt
from discosbackend.errors import ArgumentError, BackendError, InvalidRequest
from discosbackend.faults import GARBAGE, ControlHandler, Faults
from discosbackend.grammar import parse_message
from discosbackend.protocol import DBProtocolFactory
from discosbackend.simulator import MODES, UNCONFIGURED, BackendSimulator, Section

from _helpers_simulator import Wire

NOW = 1_700_000_000.0
#: A table of one configuration: four sections on feeds 1 and 4.
ONE = parse("""
[families]
Test = { nodding = "distinct-feeds" }
[configurations.XK14]
family = "Test"
bandwidth = [100, 200, 300, 400]
bins = 2048
feeds = [1, 1, 4, 4]
polarizations = ["L", "R", "FullStokes", "2"]
""")

#: docs/protocol.md section 8: every one must be answered ok with default settings.
MUST_ACCEPT = [
    "?set-section,1,50.0,200.0,1,CP,10,2048", "?set-section,1,*,*,*,*,*,*", "?cal-on",
    "?cal-on,10", "?set-enable,0,0", "?set-shift,3", "?get-tpi", "?get-tpi,0,0", "?get-rms",
    "?set-configuration,SK00",
    # the typical session
    "?set-configuration,SK00", "?set-integration,40", "?set-section,0,100,1500,0,0,3000,1024",
    "?cal-on,10", "?get-tpi,0,0", "?status", "?start", "?stop",
    "?set-filename,/archive/data/20250110/20250110-101012-P-Src_001_001.fits",
    # the other commands
    "?version", "?get-configuration", "?get-integration", "?get-tp0", "?get-tp0,0,0",
    "?time", "?convert-data", "?end-schedule", "?backend-park",
    "?set-section,-1,0,2000,0,FullStokes,4000,4096", "?set-section,0,1e+03,1500,1,1,3000,1024",
]


@pytest.fixture(name="clock")
def fixture_clock() -> task.Clock:
    clock = task.Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture(name="sim")
def fixture_sim(clock: task.Clock) -> BackendSimulator:
    return BackendSimulator(clock=clock, seed=42)


@pytest.fixture(name="wire")
def fixture_wire(sim: BackendSimulator, clock: task.Clock) -> Wire:
    return Wire(sim, clock)


def values(reply: str) -> list[float]:
    message = parse_message(reply)
    assert message.code == "ok", reply
    return [float(value) for value in message.arguments]


# -- state and defaults ----------------------------------------------------


def test_defaults(sim: BackendSimulator, clock: task.Clock) -> None:
    assert sim.section_count == 2
    assert len(sim.sections) == 2
    assert sim.get_configuration() == UNCONFIGURED == "unconfigured"
    assert sim.get_integration() == 0
    assert sim.status() == (NOW, "ok", False)
    assert sim.time() == NOW
    clock.advance(1.5)
    assert sim.time() == NOW + 1.5
    assert sim.describe() == "BackendSimulator (2 sections, 20 configurations)"
    assert BackendSimulator(sections=1, clock=clock, configurations=ONE).describe() == (
        "BackendSimulator (1 section, 1 configuration)")
    assert sim.configurations is srt()
    assert sim.enabled_feeds is None
    assert [s.mode for s in sim.sections] == ["LCP", "RCP"]
    assert not sim.calibration_on
    assert sim.filename is None


@pytest.mark.parametrize("sections", [0, -1, 2000, 1.5, True, "2"])
def test_bad_section_count(sections: object) -> None:
    with pytest.raises(ValueError, match="sections"):
        BackendSimulator(sections=sections)  # type: ignore[arg-type]


@pytest.mark.parametrize("line", [line for line in dict.fromkeys(MUST_ACCEPT)
                                  if line != "?stop"])  # stop needs a start first
def test_protocol_examples_accepted(wire: Wire, line: str) -> None:
    reply = wire.ask(line)
    assert parse_message(reply).code == "ok", reply


def test_examples_accepted_in_one_session(wire: Wire) -> None:
    for line in MUST_ACCEPT:
        if line == "?stop" and not wire.sim.acquiring:
            continue
        assert parse_message(wire.ask(line)).code == "ok", line


def test_set_section_stores_and_normalizes(sim: BackendSimulator) -> None:
    sim.set_section(1, 50.0, 200.0, 1, "cp", 10.0, 2048)
    assert sim.sections[1] == Section(50.0, 200.0, 1, "CP", 10.0, 2048)
    sim.set_section(1, "*", "*", "*", "*", "*", "*")
    assert sim.sections[1] == Section(50.0, 200.0, 1, "CP", 10.0, 2048)
    sim.set_section(1, "*", 300.0, "*", "2", "*", "*")
    assert sim.sections[1] == Section(50.0, 300.0, 1, "Stokes", 10.0, 2048)
    assert sim.sections[0].bandwidth == 1500.0  # untouched


def test_set_section_minus_one_applies_to_all(sim: BackendSimulator) -> None:
    sim.set_section(-1, sim.UNCHANGED, 500.0, 3, sim.UNCHANGED, sim.UNCHANGED, 512)
    assert [s.bandwidth for s in sim.sections] == [500.0, 500.0]
    assert [s.feed for s in sim.sections] == [3, 3]
    assert [s.bins for s in sim.sections] == [512, 512]
    assert [s.mode for s in sim.sections] == ["LCP", "RCP"]  # kept per section


@pytest.mark.parametrize("mode, kept", [
    ("0", "LCP"), ("1", "RCP"), ("2", "Stokes"), ("LCP", "LCP"), ("rcp", "RCP"),
    ("CP", "CP"), ("FullStokes", "Stokes"), ("FULLSTOKES", "Stokes"), ("stokes", "Stokes"),
])
def test_modes(sim: BackendSimulator, mode: str, kept: str) -> None:
    sim.set_section(0, "*", "*", "*", mode, "*", "*")
    assert sim.sections[0].mode == kept
    assert MODES[mode.lower()] == kept


@pytest.mark.parametrize("arguments, reason", [
    ((0, 100, 5000, 0, "0", 3000, 1024), "bandwidth 5000 out of range 1..2300 MHz"),
    ((0, 100, 0.5, 0, "0", 3000, 1024), "bandwidth 0.5 out of range"),
    ((0, -5, 100, 0, "0", 3000, 1024), "frequency -5 out of range"),
    ((0, 100, 100, 7, "0", 3000, 1024), "feed 7 out of range 0..6"),
    ((0, 100, 100, -1, "0", 3000, 1024), "feed -1 out of range"),
    ((0, 100, 100, 0, "XX", 3000, 1024), "mode 'XX' unknown"),
    ((0, 100, 100, 0, "3", 3000, 1024), "mode '3' unknown"),
    ((0, 100, 100, 0, "0", 0, 1024), "sample-rate 0 out of range"),
    ((0, 100, 100, 0, "0", 3000, 1000), "bins 1000 not a power of two"),
    ((0, 100, 100, 0, "0", 3000, 0), "bins 0 out of range"),
    ((0, 100, 100, 0, "0", 3000, 2 ** 20), "bins 1048576 out of range"),
    ((2, 100, 100, 0, "0", 3000, 1024), "section 2 out of range 0..1 (-1 for all)"),
    ((-2, 100, 100, 0, "0", 3000, 1024), "section -2 out of range"),
    (("*", 100, 100, 0, "0", 3000, 1024), "section * not allowed"),
    ((0, "abc", 100, 0, "0", 3000, 1024), "frequency 'abc' is not a number"),
    ((0, 100, float("nan"), 0, "0", 3000, 1024), "bandwidth nan is not a finite number"),
    ((0, 100, 100, 1.5, "0", 3000, 1024), "feed 1.5 is not an integer"),
])
def test_set_section_rejects(sim: BackendSimulator, arguments: tuple, reason: str) -> None:
    before = sim.sections
    with pytest.raises(BackendError) as caught:
        sim.set_section(*arguments)
    assert str(caught.value).startswith(reason)
    assert "," not in str(caught.value)
    assert sim.sections == before  # nothing applied


def test_set_section_fail_reply(wire: Wire) -> None:
    assert wire.ask("?set-section,0,100,5000,0,0,3000,1024") == (
        "!set-section,fail,bandwidth 5000 out of range 1..2300 MHz")
    assert wire.ask("?set-section,0,100,500,0,0,3000") == (
        "!set-section,fail,set-section needs 7 arguments (got 6)")


@pytest.mark.parametrize("name", list(srt()))
def test_every_srt_configuration_loads_its_sections(sim: BackendSimulator, name: str) -> None:
    sim.set_section(0, "*", 300.0, "*", "*", "*", "*")
    sim.set_enable(0, 0)
    sim.set_configuration(name)
    assert sim.get_configuration() == name
    assert sim.enabled_feeds is None  # every input reported again
    layout = srt()[name]
    assert sim.layout is layout
    assert sim.section_count == len(layout.sections)
    assert sim.sections == tuple(
        Section(100.0, s.bandwidth, s.feed, s.polarization, 2 * s.bandwidth, s.bins)
        for s in layout.sections)
    for read in (sim.get_tpi, sim.get_tp0, sim.get_rms):
        assert len(read()) == sim.section_count


def test_sk77_has_a_pair_of_sections_per_feed(sim: BackendSimulator) -> None:
    sim.set_configuration("SK77")
    assert [(s.feed, s.mode) for s in sim.sections] == [
        (feed, mode) for feed in range(7) for mode in ("LCP", "RCP")]
    assert {s.bandwidth for s in sim.sections} == {1500.0}
    sim.set_configuration("SKARAB_3S")
    assert [(s.feed, s.mode, s.bandwidth, s.bins) for s in sim.sections] == [
        (0, "Stokes", 187.5, 65536), (0, "Stokes", 187.5, 65536)]


@pytest.mark.parametrize("name", ["", "a b", "XK77", "sk00", "SK00 ", "x" * 33, "é", None])
def test_unknown_configurations_are_refused(sim: BackendSimulator, name: object) -> None:
    with pytest.raises(BackendError, match="^configuration .* unknown: use SK00 SC00 "):
        sim.set_configuration(name)  # type: ignore[arg-type]
    assert sim.get_configuration() == UNCONFIGURED


def test_unknown_configuration_reply_names_the_known_ones(wire: Wire) -> None:
    reply = wire.ask("?set-configuration,XK77")
    assert reply.startswith("!set-configuration,fail,configuration 'XK77' unknown: use SK00 ")
    assert reply.endswith(" SKARAB_5S") and len(reply) < 300


def test_integration(sim: BackendSimulator) -> None:
    sim.set_integration(40)
    assert sim.get_integration() == 40
    sim.set_integration(2**31 - 1)  # what a 32-bit integer of ms holds
    with pytest.raises(BackendError, match="integration 2147483648 out of range 0..2147483647"):
        sim.set_integration(2**31)
    with pytest.raises(BackendError, match="integration -1 out of range"):
        sim.set_integration(-1)
    assert sim.get_integration() == 2**31 - 1


def test_cal_on_filename_enable_shift(sim: BackendSimulator) -> None:
    sim.cal_on(10)
    assert sim.interleave == 10 and sim.calibration_on
    sim.cal_on(0)
    assert not sim.calibration_on
    with pytest.raises(BackendError, match="interleave -1 negative"):
        sim.cal_on(-1)
    sim.set_filename("/archive/x.fits")
    assert sim.filename == "/archive/x.fits"
    with pytest.raises(BackendError, match="filename empty"):
        sim.set_filename("")
    sim.set_enable(1, 6)
    assert sim.enabled_feeds == (1, 6)
    sim.set_enable(7, 7)  # all feeds
    assert sim.enabled_feeds == (7, 7)
    for feeds in ((0, 8), (-1, 0)):
        with pytest.raises(BackendError, match=r"^feed -?[0-9] out of range 0..6 \(7: all "):
            sim.set_enable(*feeds)
    assert sim.enabled_feeds == (7, 7)
    for shift in (3, 40, -63, 63):
        sim.set_shift(shift)
        assert sim.shift == shift
    with pytest.raises(BackendError, match="shift 64 out of range -63..63"):
        sim.set_shift(64)


def test_busy_while_acquiring(sim: BackendSimulator) -> None:
    sim.start()
    for call in (lambda: sim.set_configuration("SK00"),
                 lambda: sim.set_section(0, "*", "*", "*", "*", "*", "*"), sim.convert_data):
        with pytest.raises(BackendError, match="^busy acquiring"):
            call()
    sim.set_filename("/f")
    sim.stop()
    sim.convert_data()
    assert sim.conversions == 1


def test_what_discos_cannot_see_refused_is_accepted_while_acquiring(wire: Wire) -> None:
    """A fail to any of these four ends the real client's component."""
    assert wire.ask("?set-configuration,SK77") == "!set-configuration,ok"
    assert wire.ask("?start") == "!start,ok"
    for line in ("?set-integration,40", "?set-integration,0", "?cal-on,10", "?cal-on",
                 "?set-enable,2,3", "?set-enable,7,7", "?set-enable,0,0", "?set-shift,3",
                 "?set-shift,-3"):
        assert wire.ask(line) == f"!{line[1:].split(',')[0]},ok", line
    assert wire.sim.acquiring
    # applied at once: the mark, the feeds, the shift
    assert (wire.sim.interleave, wire.sim.enabled_feeds, wire.sim.shift) == (0, (0, 0), -3)
    # only impossible values are refused
    assert wire.ask("?set-integration,-1").startswith("!set-integration,fail,invalid")
    assert wire.ask("?set-enable,0,9") == (
        "!set-enable,fail,feed 9 out of range 0..6 (7: all feeds)")
    assert wire.ask("?cal-on,-1").startswith("!cal-on,fail,invalid")


def test_integration_set_while_acquiring_applies_from_the_next_start(
        sim: BackendSimulator) -> None:
    sim.set_integration(1000)
    sim.start()
    sim.set_integration(10)
    assert sim.get_integration() == 10  # the setting, at once
    assert sim.integration_in_use == 1000  # the acquisition keeps its own
    long = sim.get_rms()
    sim.stop()
    assert sim.integration_in_use == 10
    sim.start()
    assert sim.integration_in_use == 10
    short = sim.get_rms()
    for s, l in zip(short, long):
        assert s / l == pytest.approx(10, rel=0.3)  # radiometer: sqrt(1000 / 10)


# -- acquisition ---------------------------------------------------------


def test_start_stop_now(sim: BackendSimulator, clock: task.Clock) -> None:
    sim.start()
    assert sim.acquiring and sim.started_at == NOW
    assert sim.status() == (NOW, "ok", True)
    with pytest.raises(BackendError, match="already acquiring"):
        sim.start()
    clock.advance(2)
    sim.stop()
    assert not sim.acquiring and sim.stopped_at == NOW + 2
    with pytest.raises(BackendError, match="not acquiring"):
        sim.stop()


def test_time_tagged_start_stop(wire: Wire, clock: task.Clock) -> None:
    sim = wire.sim
    assert wire.ask(f"?start,{NOW + 10:.7f}") == "!start,ok"
    assert wire.ask(f"?stop,{int((NOW + 20) * 10**7)}") == "!stop,ok"
    assert sim.pending_start == NOW + 10 and sim.pending_stop == NOW + 20
    assert wire.ask("?get-tpi,0,0").startswith("!get-tpi,ok,")  # still answering
    clock.advance(9.9)
    assert not sim.acquiring
    clock.advance(0.1)
    assert sim.acquiring and sim.started_at == NOW + 10
    assert wire.ask("?status").endswith(",ok,1")
    clock.advance(10)
    assert not sim.acquiring and sim.stopped_at == NOW + 20
    assert wire.ask("?status") == f"!status,ok,{NOW + 20:.7f},ok,0"
    assert wire.ask("?set-filename,/archive/a.fits") == "!set-filename,ok"
    assert wire.ask(f"?start,{NOW:.7f}").startswith("!start,fail,past timestamp")


def test_park_stops_everything(sim: BackendSimulator, clock: task.Clock) -> None:
    sim.cal_on(10)
    sim.start()
    sim.stop(NOW + 5)
    sim.park()
    assert not sim.acquiring and sim.pending_stop is None and sim.parked
    assert not sim.calibration_on
    sim.start(NOW + 1)
    sim.park()
    clock.advance(2)
    assert not sim.acquiring
    sim.end_schedule()
    assert sim.schedule_ended
    sim.start()
    assert not sim.parked and not sim.schedule_ended


def test_close_cancels_pending(sim: BackendSimulator, clock: task.Clock) -> None:
    sim.start(NOW + 1)
    sim.close()
    clock.advance(2)
    assert not sim.acquiring


# -- levels ----------------------------------------------------------------


def test_one_value_per_section(clock: task.Clock) -> None:
    sim = BackendSimulator(sections=5, clock=clock, seed=1)
    for read in (sim.get_tpi, sim.get_tp0, sim.get_rms):
        found = read()
        assert len(found) == 5
        assert all(isinstance(v, float) and math.isfinite(v) for v in found)
    wire = Wire(sim, clock)
    assert len(values(wire.ask("?get-tpi,0,0"))) == 5


def test_tpi_plausible_and_noisy(sim: BackendSimulator) -> None:
    first, second = sim.get_tpi(), sim.get_tpi()
    assert first != second  # noise
    for a, b, gain in zip(first, second, (sim.gains[0, "LCP"], sim.gains[0, "RCP"])):
        assert 0.5 * 1500 < a < 0.9 * 1500
        assert abs(a - b) / a < 0.02
        assert abs(a / (gain * 1500) - 1) < 0.02


def test_tpi_scales_with_bandwidth(sim: BackendSimulator) -> None:
    wide = sim.get_tpi()
    sim.set_section(-1, "*", 200.0, "*", "*", "*", "*")
    narrow = sim.get_tpi()
    for w, n in zip(wide, narrow):
        assert w / n == pytest.approx(1500 / 200, rel=0.02)
    # a bandwidth in the request overrides the sections' own
    asked = sim.get_tpi(None, 1500.0)
    for w, a in zip(wide, asked):
        assert w == pytest.approx(a, rel=0.02)


def test_tpi_rises_with_calibration_mark(sim: BackendSimulator) -> None:
    off = sim.get_tpi()
    sim.cal_on(10)
    on = sim.get_tpi()
    sim.cal_on(0)
    off_again = sim.get_tpi()
    for a, b, c in zip(off, on, off_again):
        assert b / a == pytest.approx(1.12, rel=0.02)
        assert c == pytest.approx(a, rel=0.02)


def test_tp0_near_zero(sim: BackendSimulator) -> None:
    for zero, level in zip(sim.get_tp0(), sim.get_tpi()):
        assert 0 <= zero < 1.0
        assert zero < 0.01 * level


def test_rms_follows_integration(sim: BackendSimulator) -> None:
    sim.set_integration(10)
    short = sim.get_rms()
    sim.set_integration(1000)
    long = sim.get_rms()
    for s, l, level in zip(short, long, sim.get_tpi()):
        assert 0 < l < s < level / 100
        assert s / l == pytest.approx(10, rel=0.3)


def test_seed_makes_levels_repeatable(clock: task.Clock) -> None:
    one, two = BackendSimulator(clock=clock, seed=7), BackendSimulator(clock=clock, seed=7)
    assert one.get_tpi() == two.get_tpi()
    assert one.gains == two.gains


def test_seed_makes_a_whole_session_repeatable(clock: task.Clock) -> None:
    def session(seed: int) -> list[list[float]]:
        sim = BackendSimulator(clock=clock, seed=seed)
        readings = [sim.get_tpi(), sim.get_tp0()]
        sim.set_configuration("SK77")
        sim.set_integration(40)
        sim.cal_on(10)
        readings += [sim.get_tpi(), sim.get_rms()]
        sim.set_enable(2, 3)
        return readings + [sim.get_tpi(), sim.get_rms(), sim.get_tp0()]
    assert session(5) == session(5)
    assert session(5) != session(6)


def test_tpi_arguments_checked(sim: BackendSimulator) -> None:
    with pytest.raises(BackendError, match="bandwidth 9000 out of range"):
        sim.get_tpi(100.0, 9000.0)
    with pytest.raises(BackendError, match="frequency -1 out of range"):
        sim.get_tp0(-1.0)
    assert len(sim.get_tpi(100.0, 500.0)) == 2


def test_rms_is_the_radiometer_equation(sim: BackendSimulator) -> None:
    sim.set_configuration("SKARAB_4")  # 93.75 MHz
    sim.set_integration(40)
    for rms, level in zip(sim.get_rms(), sim.get_tpi()):
        assert rms == pytest.approx(level / math.sqrt(93.75e6 * 0.040), rel=0.25)


# -- nodding ---------------------------------------------------------------


def counts(sim: BackendSimulator) -> tuple[int, int, int]:
    return len(sim.get_tpi()), len(sim.get_tp0()), len(sim.get_rms())


@pytest.mark.parametrize("configuration, feeds, expected", [
    # Sardara: the inputs of both feeds, even of one feed twice
    ("SK77", None, 14), ("SK77", (2, 3), 4), ("SK77", (3, 3), 4), ("SK77", (7, 7), 14),
    ("SK77", (0, 7), 14), ("SK00", (0, 0), 4), ("SK00", (0, 5), 4), ("SK77S", (6, 0), 4),
    ("SP00S", None, 2),
    # SKARAB: the inputs of each distinct feed once
    ("SKARAB_1", None, 2), ("SKARAB_1", (7, 7), 2), ("SKARAB_1", (0, 3), 4),
    ("SKARAB_1", (2, 2), 2), ("SKARAB_5S", (1, 1), 2), ("SKARAB_2", (6, 0), 4),
])
def test_nodding_reports_what_the_real_client_expects(
        sim: BackendSimulator, configuration: str, feeds: tuple[int, int] | None,
        expected: int) -> None:
    sim.set_configuration(configuration)
    if feeds is not None:
        sim.set_enable(*feeds)
    assert counts(sim) == (expected,) * 3


def test_each_set_enable_changes_the_count_again(wire: Wire) -> None:
    assert wire.ask("?set-configuration,SKARAB_1") == "!set-configuration,ok"
    for feeds, expected in (("0,3", 4), ("2,2", 2), ("7,7", 2), ("1,5", 4), ("7,7", 2)):
        assert wire.ask(f"?set-enable,{feeds}") == "!set-enable,ok"
        assert len(values(wire.ask("?get-tpi,0,0"))) == expected, feeds
        assert len(values(wire.ask("?get-rms"))) == expected, feeds
    wire.ask("?set-enable,1,5")
    assert wire.ask("?set-configuration,SKARAB_1") == "!set-configuration,ok"
    assert len(values(wire.ask("?get-tpi,0,0"))) == 2  # a configuration reports every input


def test_before_any_configuration_it_nods_like_sardara(clock: task.Clock) -> None:
    sim = BackendSimulator(sections=4, clock=clock)  # feeds 0 0 1 1
    assert counts(sim) == (4, 4, 4)
    for feeds in ((1, 1), (0, 1), (5, 6)):
        sim.set_enable(*feeds)
        assert counts(sim) == (4, 4, 4), feeds
    single = BackendSimulator(sections=1, clock=clock)
    single.set_enable(3, 3)
    assert counts(single) == (2, 2, 2)


def test_levels_differ_per_feed_and_polarization(clock: task.Clock) -> None:
    sim = BackendSimulator(clock=clock, seed=3)
    gain = sim.gains
    sim.set_configuration("SK77")
    assert sim.get_tpi() == pytest.approx(
        [gain[feed, mode] * 1500 for feed in range(7) for mode in ("LCP", "RCP")], rel=0.01)
    sim.set_enable(3, 5)
    nodding = sim.get_tpi()
    assert nodding == pytest.approx([gain[3, "LCP"] * 1500, gain[3, "RCP"] * 1500,
                                     gain[5, "LCP"] * 1500, gain[5, "RCP"] * 1500], rel=0.01)
    assert len(set(nodding)) == 4
    # a single-beam configuration nodding onto feed 4 reports feed 4's levels
    sim.set_configuration("SK00")
    sim.set_enable(0, 4)
    assert sim.get_tpi() == pytest.approx([gain[0, "LCP"] * 1500, gain[0, "RCP"] * 1500,
                                           gain[4, "LCP"] * 1500, gain[4, "RCP"] * 1500],
                                          rel=0.01)
    sim.set_configuration("SK00S")
    assert sim.get_tpi() == pytest.approx([gain[0, "Stokes"] * 1500] * 2, rel=0.01)


def test_a_table_of_its_own(clock: task.Clock) -> None:
    sim = BackendSimulator(clock=clock, seed=1, configurations=ONE)
    with pytest.raises(BackendError, match="configuration 'SK00' unknown: use XK14$"):
        sim.set_configuration("SK00")
    sim.set_configuration("XK14")
    assert [(s.bandwidth, s.feed, s.mode, s.bins) for s in sim.sections] == [
        (100.0, 1, "LCP", 2048), (200.0, 1, "RCP", 2048), (300.0, 4, "Stokes", 2048),
        (400.0, 4, "Stokes", 2048)]
    levels = sim.get_tpi()
    assert levels == pytest.approx([sim.gains[1, "LCP"] * 100, sim.gains[1, "RCP"] * 200,
                                    sim.gains[4, "Stokes"] * 300,
                                    sim.gains[4, "Stokes"] * 400], rel=0.01)
    for feeds, expected in (((4, 4), 2), ((1, 4), 4), ((2, 2), 2), ((7, 4), 4)):
        sim.set_enable(*feeds)
        assert counts(sim) == (expected,) * 3, feeds


@pytest.mark.parametrize("entry, reason", [
    ('bandwidth = 5000, bins = 1024, feeds = [0], polarizations = ["L"]',
     "configuration XK: bandwidth 5000 out of range 1..2300 MHz"),
    ('bandwidth = 500, bins = 1024, feeds = [9], polarizations = ["L"]',
     "configuration XK: feed 9 out of range 0..6"),
    ('bandwidth = 500, bins = 1000, feeds = [0], polarizations = ["L"]',
     "configuration XK: bins 1000 not a power of two"),
    ('bandwidth = 500, bins = 1024, feeds = [0], polarizations = ["L"]',
     ""),
])
def test_a_table_beyond_the_limits_is_refused_at_once(entry: str, reason: str) -> None:
    table = parse(f'families.F = {{ nodding = "both-feeds" }}\n'
                  f'configurations.XK = {{ family = "F", {entry} }}\n')
    if not reason:
        assert BackendSimulator(configurations=table).configurations is table
        return
    with pytest.raises(ConfigurationError) as raised:
        BackendSimulator(configurations=table)
    assert str(raised.value) == reason


def test_too_many_sections_in_a_table(clock: task.Clock) -> None:
    feeds, polarizations = ", ".join(["0"] * 1025), ", ".join(['"S"'] * 1025)
    table = parse(f'families.F = {{ nodding = "both-feeds" }}\n'
                  f'configurations.XK = {{ family = "F", bandwidth = 500, bins = 1024, '
                  f'feeds = [{feeds}], polarizations = [{polarizations}] }}\n')
    with pytest.raises(ConfigurationError, match="configuration XK: 1025 sections; at most 1024"):
        BackendSimulator(clock=clock, configurations=table)


# -- faults ----------------------------------------------------------------


def test_faults_api() -> None:
    faults = Faults(["start", "get-tpi", "version", "status"])
    assert faults.active() == [] and repr(faults) == "Faults(none)"
    faults.fail("start", "hardware-error, really")
    faults.delay("get-tpi", 2.5)
    faults.status_word("clock-error")
    faults.garbage_once()
    faults.close_after_next()
    assert faults.active() == ["fail:start:hardware-error; really", "delay:get-tpi:2.5",
                               "status-word:clock-error", "garbage", "disconnect"]
    assert faults.failure_for("start") == "hardware-error; really"
    assert faults.failure_for("status") is None
    assert faults.delay_for("get-tpi") == 2.5 and faults.delay_for("start") == 0.0
    assert not faults.take_garbage("version")
    assert faults.take_garbage("status") and not faults.take_garbage("status")
    assert not faults.take_disconnect("version")
    assert faults.take_disconnect("status") and not faults.take_disconnect("status")
    faults.delay("get-tpi", 0)
    assert faults.delay_for("get-tpi") == 0.0
    faults.status_word("ok")
    assert faults.status is None
    faults.status_word("x")
    faults.clear()
    assert faults.active() == [] and faults.status is None


def test_faults_for_every_command() -> None:
    faults = Faults(["start", "version"])
    faults.fail("*", "down")
    faults.delay("*", 1)
    assert faults.failure_for("start") == "down" and faults.delay_for("start") == 1.0
    assert faults.failure_for("version") is None and faults.delay_for("version") == 0.0
    faults.fail("version", "broken")
    assert faults.failure_for("version") == "broken"


@pytest.mark.parametrize("call, message", [
    (lambda f: f.fail("nosuch", "x"), "unknown command 'nosuch'"),
    (lambda f: f.fail("start", "  "), "empty reason"),
    (lambda f: f.delay("start", -1), "delay -1 out of range"),
    (lambda f: f.delay("start", float("nan")), "out of range"),
    (lambda f: f.delay("start", 1e9), "out of range"),
    (lambda f: f.delay("start", "soon"), "invalid delay 'soon'"),
    (lambda f: f.status_word("clock error"), "invalid status word"),
    (lambda f: f.status_word("a,b"), "invalid status word"),
])
def test_faults_refuse(call, message: str) -> None:
    faults = Faults(["start"])
    with pytest.raises(ArgumentError, match=message):
        call(faults)
    assert faults.active() == []


def test_faults_without_table() -> None:
    faults = Faults()
    faults.fail("anything-goes", "x")
    with pytest.raises(ValueError):
        faults.fail("bad name", "x")


def test_simulator_faults_know_its_commands(sim: BackendSimulator) -> None:
    sim.faults.fail("get-rms", "x")
    sim.faults.fail("backend-park", "x")
    with pytest.raises(ArgumentError):
        sim.faults.fail("get_rms", "x")


def test_fail_fault(wire: Wire) -> None:
    assert wire.handler.faults is wire.sim.faults
    wire.sim.faults.fail("start", "hardware-error")
    assert wire.ask("?start") == "!start,fail,hardware-error"
    assert not wire.sim.acquiring  # the backend was not asked
    assert wire.ask("?status").startswith("!status,ok,")
    assert wire.ask("?nosuch") == "!nosuch,invalid,unknown command 'nosuch'"
    wire.sim.faults.clear()
    assert wire.ask("?start") == "!start,ok"


def test_status_word_fault(wire: Wire) -> None:
    wire.sim.faults.status_word("clock-error")
    assert wire.ask("?status") == f"!status,ok,{NOW:.7f},clock-error,0"
    wire.sim.faults.clear()
    assert wire.ask("?status") == f"!status,ok,{NOW:.7f},ok,0"


def test_delay_fault_uses_the_clock(wire: Wire) -> None:
    wire.sim.faults.delay("get-tpi", 2.5)
    wire.send("?get-tpi,0,0", "?status")
    assert wire.take() == []  # the status reply waits behind the delayed one
    wire.clock.advance(2.4)
    assert wire.take() == []
    wire.clock.advance(0.1)
    replies = wire.take()
    assert len(replies) == 2
    assert replies[0].startswith("!get-tpi,ok,") and replies[1].startswith("!status,ok,")


def test_delay_then_fail(wire: Wire) -> None:
    wire.sim.faults.delay("start", 1)
    wire.sim.faults.fail("start", "late-error")
    wire.send("?start")
    wire.clock.advance(1)
    assert wire.take() == ["!start,fail,late-error"]


def test_garbage_fault(wire: Wire) -> None:
    wire.sim.faults.garbage_once()
    assert wire.ask("?version") == "!version,ok,1.4"  # never garbled
    wire.send("?status")
    assert wire.transport.value() == GARBAGE
    wire.transport.clear()
    with pytest.raises(Exception):
        parse_message(GARBAGE.decode())
    assert wire.ask("?status").startswith("!status,ok,")


def test_close_fault(wire: Wire) -> None:
    wire.sim.faults.close_after_next()
    assert wire.ask("?version") == "!version,ok,1.4"
    assert not wire.transport.disconnecting
    assert wire.ask("?get-integration") == "!get-integration,ok,0"
    assert wire.transport.disconnecting
    assert wire.sim.faults.active() == []


def test_close_fault_after_a_failure(wire: Wire) -> None:
    wire.sim.faults.close_after_next()
    assert wire.ask("?stop") == "!stop,fail,not acquiring"
    assert wire.transport.disconnecting


def test_close_fault_after_an_internal_error(sim: BackendSimulator, clock: task.Clock) -> None:
    def broken() -> None:
        raise RuntimeError("oops")
    sim.get_rms = broken  # type: ignore[method-assign]
    wire = Wire(sim, clock)  # the handler looks methods up when it is made
    wire.sim.faults.close_after_next()
    assert wire.ask("?get-rms") == "!get-rms,fail,internal error: RuntimeError: oops"
    assert wire.transport.disconnecting


def test_close_fault_with_delay(wire: Wire) -> None:
    wire.sim.faults.delay("time", 3)
    wire.sim.faults.close_after_next()
    wire.send("?time")
    wire.clock.advance(3)
    assert wire.take() == [f"!time,ok,{NOW + 3:.7f}"]
    assert wire.transport.disconnecting


def test_delay_beyond_the_server_timeout(sim: BackendSimulator, clock: task.Clock) -> None:
    wire = Wire(sim, clock, timeout=1.0)
    sim.faults.delay("get-tpi", 5)
    sim.faults.close_after_next()
    wire.send("?get-tpi")
    clock.advance(1)
    assert wire.take() == ["!get-tpi,fail,timeout after 1 s"]
    clock.advance(10)
    assert wire.take() == []


# -- control handler -------------------------------------------------------


def control(faults: Faults, line: str) -> str:
    return str(ControlHandler(faults).handle(parse_message(line)))


def test_control_commands(sim: BackendSimulator) -> None:
    faults = sim.faults
    assert control(faults, "?version") == "!version,ok,1.4"
    assert control(faults, "?fail,start,hardware-error") == "!fail,ok"
    assert control(faults, "?delay,get-tpi,2.5") == "!delay,ok"
    assert control(faults, "?status-word,clock-error") == "!status-word,ok"
    assert control(faults, "?garbage") == "!garbage,ok"
    assert control(faults, "?disconnect") == "!disconnect,ok"
    assert control(faults, "?faults") == ("!faults,ok,fail:start:hardware-error,"
                                         "delay:get-tpi:2.5,status-word:clock-error,"
                                         "garbage,disconnect")
    assert sim.status()[1] == "clock-error"
    assert control(faults, "?clear") == "!clear,ok"
    assert control(faults, "?faults") == "!faults,ok"


@pytest.mark.parametrize("line, error, text", [
    ("?fail,nosuch,x", ArgumentError, "unknown command 'nosuch'"),
    ("?fail,start", ArgumentError, "fail needs 2 arguments"),
    ("?delay,get-tpi,soon", ArgumentError, "invalid seconds 'soon'"),
    ("?delay,get-tpi,-1", ArgumentError, "delay -1.0 out of range"),
    ("?status-word,a b", ArgumentError, "invalid word"),
    ("?clear,now", ArgumentError, "clear takes no arguments"),
    ("?status", InvalidRequest, "unknown command 'status'"),
])
def test_control_refuses(sim: BackendSimulator, line: str, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        control(sim.faults, line)
    assert sim.faults.active() == []


def test_control_over_the_protocol(sim: BackendSimulator) -> None:
    factory = DBProtocolFactory(ControlHandler(sim.faults))
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"?fail,start,hardware-error\r\n?nosuch\r\n?delay,x,1\r\n")
    assert transport.value().decode().split("\r\n") == [
        "!version,ok,1.4", "!fail,ok",
        "!nosuch,invalid,unknown command 'nosuch': use one of clear delay disconnect fail "
        "faults garbage status-word version",
        "!delay,fail,unknown command 'x'", ""]


def test_close_fault_with_a_fail_fault_replies_fail_then_closes(wire: Wire) -> None:
    wire.sim.faults.fail("status", "hardware-error")
    wire.sim.faults.close_after_next()
    wire.send("?status", "?time")  # one packet: the line after the close gets no reply
    assert wire.take() == ["!status,fail,hardware-error"]
    assert wire.transport.disconnecting
    assert wire.sim.faults.active() == ["fail:status:hardware-error"]
