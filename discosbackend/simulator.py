"""A simulated backend to test DISCOS (and clients) against, faults included.

:class:`BackendSimulator` keeps the state a real total-power/spectrometer
backend keeps (sections, configuration, integration, calibration mark,
acquisition, file name, enabled feeds, shift), checks requests against
believable hardware limits, and answers ``get-tpi``/``get-tp0``/``get-rms``
with noisy levels that follow the bandwidth and the calibration mark.

Serve it with :class:`SimulatorHandler`, which applies the faults injected
through :attr:`BackendSimulator.faults` (see :mod:`discosbackend.faults`)::

    simulator = BackendSimulator(sections=4)
    server.run_server(8978, SimulatorHandler(simulator))

or just run ``discos-backend serve``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from discosbackend.backend import UNCHANGED, Backend
from discosbackend.commands import commands_of
from discosbackend.errors import BackendError
from discosbackend.faults import GARBAGE, Faults
from discosbackend.grammar import Message
from discosbackend.handlers import CloseAfter, DBProtocolHandler, RawReply, Reply

__all__ = ["BackendSimulator", "SimulatorHandler", "Section", "UNCONFIGURED", "MODES"]

#: What ``get-configuration`` answers before a configuration is set.
UNCONFIGURED = "unconfigured"
#: Accepted ``set-section`` modes (lower case) and the name each is kept as.
MODES = {
    "0": "LCP", "1": "RCP", "2": "Stokes",
    "lcp": "LCP", "rcp": "RCP", "cp": "CP", "stokes": "Stokes", "fullstokes": "Stokes",
}

_CONFIGURATION_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_CAL_FRACTION = 0.12      # how much the calibration mark adds to the power
_LEVEL_NOISE = 0.002      # relative noise of a tpi reading
_ZERO_LEVEL = 0.4         # mean tp0 (counts)
_log = Logger()


@dataclass(frozen=True)
class Section:
    """The settings of one section.  Frequencies and rates in MHz."""

    start_freq: float
    bandwidth: float
    feed: int
    mode: str
    sample_rate: float
    bins: int


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BackendError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise BackendError(f"{name} {value!r} is not a finite number")
    return number


def _integer(value: Any, name: str) -> int:
    number = _number(value, name)
    if number != int(number):
        raise BackendError(f"{name} {value!r} is not an integer")
    return int(number)


def _within(number: float, limits: tuple[float, float], name: str, unit: str = "") -> None:
    low, high = limits
    if not low <= number <= high:
        raise BackendError(f"{name} {number:.10g} out of range {low:.10g}..{high:.10g}"
                           + (f" {unit}" if unit else ""))


class BackendSimulator(Backend):
    """A believable backend with ``sections`` sections and injectable faults.

    ``clock`` times start/stop, delays and ``time`` (the reactor unless
    given, e.g. a ``task.Clock`` in tests); ``seed`` makes the noise
    repeatable.  The class attributes hold the hardware limits: subclass to
    change them.  Faults are set through :attr:`faults` and take effect when
    the simulator is served through :class:`SimulatorHandler` (the status
    word takes effect in any case).
    """

    #: Number of feeds: feeds are numbered 0..FEEDS-1.
    FEEDS = 7
    #: Start frequency limits, MHz.
    FREQUENCY_RANGE = (0.0, 100_000.0)
    #: Bandwidth limits, MHz.
    BANDWIDTH_RANGE = (1.0, 2300.0)
    #: Sample rate limits, MHz.
    SAMPLE_RATE_RANGE = (0.001, 10_000.0)
    #: Bins limits; bins must also be a power of two.
    BINS_RANGE = (1, 65_536)
    #: Longest integration, ms.
    MAX_INTEGRATION = 3_600_000
    #: Shift limits.
    SHIFT_RANGE = (-31, 31)
    #: Most sections a simulator can have.
    MAX_SECTIONS = 1024

    def __init__(self, sections: int = 2, clock: IReactorTime | None = None,
                 seed: int | None = None) -> None:
        super().__init__(clock)
        if isinstance(sections, bool) or not isinstance(sections, int) \
                or not 1 <= sections <= self.MAX_SECTIONS:
            raise ValueError(f"sections must be an integer from 1 to {self.MAX_SECTIONS},"
                             f" not {sections!r}")
        self._random = random.Random(seed)
        self._count = sections
        #: Counts per MHz of bandwidth of each section's total power.
        self.gains = [round(self._random.uniform(0.55, 0.85), 4) for _ in range(sections)]
        self._zero = [_ZERO_LEVEL * self._random.uniform(0.5, 1.5) for _ in range(sections)]
        self._sections = self.default_sections()
        self.configuration = UNCONFIGURED
        self.integration = 0
        self.interleave = 0
        self.filename: str | None = None
        self.enabled_feeds: tuple[int, int] = (0, 0)
        self.shift = 0
        self.parked = False
        self.schedule_ended = False
        self.conversions = 0
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.faults = Faults(commands_of(self))

    # -- state ----------------------------------------------------------

    @property
    def section_count(self) -> int:
        """How many sections the simulator has."""
        return self._count

    @property
    def sections(self) -> tuple[Section, ...]:
        """The settings of every section, in order."""
        return tuple(self._sections)

    @property
    def calibration_on(self) -> bool:
        """Whether the calibration mark is on (``cal-on`` with an interleave > 0)."""
        return self.interleave > 0

    def default_sections(self) -> list[Section]:
        """The sections as they are before any ``set-section``: pairs of LCP/RCP per feed."""
        return [Section(start_freq=100.0, bandwidth=1500.0,
                        feed=min(index // 2, self.FEEDS - 1),
                        mode="LCP" if index % 2 == 0 else "RCP",
                        sample_rate=3000.0, bins=1024)
                for index in range(self._count)]

    def describe(self) -> str:
        """A short description, e.g. ``BackendSimulator (2 sections)``."""
        plural = "section" if self._count == 1 else "sections"
        return f"{type(self).__name__} ({self._count} {plural})"

    def _idle(self, what: str) -> None:
        if self.acquiring:
            raise BackendError(f"busy acquiring: stop before {what}")

    # -- commands -------------------------------------------------------

    def status(self) -> tuple[Any, str, bool]:
        """Time, status word (``ok`` unless a fault sets one) and acquiring flag."""
        return self.time(), self.faults.status or "ok", self.acquiring

    def get_configuration(self) -> str:
        """The configuration id, ``unconfigured`` before the first one."""
        return self.configuration

    def set_configuration(self, configuration: str) -> None:
        """Load configuration ``configuration`` (e.g. ``SK00``): sections go back to defaults."""
        if not isinstance(configuration, str) or not _CONFIGURATION_RE.fullmatch(configuration):
            raise BackendError(f"configuration {configuration!r} unknown: an id is 1 to 32 "
                               "letters digits - or _")
        self._idle("set-configuration")
        self.configuration = configuration
        self._sections = self.default_sections()

    def get_integration(self) -> int:
        """The integration time in ms (0 before set)."""
        return self.integration

    def set_integration(self, integration: int) -> None:
        """Set the integration time, ms."""
        value = _integer(integration, "integration")
        _within(value, (0, self.MAX_INTEGRATION), "integration", "ms")
        self._idle("set-integration")
        self.integration = value

    def _levels(self, bandwidth: float | None, zero: bool = False) -> list[float]:
        if bandwidth is not None:
            _within(_number(bandwidth, "bandwidth"), self.BANDWIDTH_RANGE, "bandwidth", "MHz")
        values = []
        for index, section in enumerate(self._sections):
            if zero:
                level = self._zero[index] + self._random.gauss(0.0, 0.02)
            else:
                power = self.gains[index] * (bandwidth or section.bandwidth)
                if self.calibration_on:
                    power *= 1.0 + _CAL_FRACTION
                level = power * (1.0 + self._random.gauss(0.0, _LEVEL_NOISE))
            values.append(round(level, 4))
        return values

    def _check_frequency(self, frequency: float | None) -> None:
        if frequency is not None:
            _within(_number(frequency, "frequency"), self.FREQUENCY_RANGE, "frequency", "MHz")

    def get_tpi(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        """Total power per section; ``bandwidth`` (MHz) overrides the sections' own."""
        self._check_frequency(frequency)
        return self._levels(bandwidth)

    def get_tp0(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        """Zero-level power per section: a little above zero."""
        self._check_frequency(frequency)
        return self._levels(bandwidth, zero=True)

    def get_rms(self) -> list[float]:
        """The rms of the power per section, as the radiometer equation has it."""
        seconds = max(self.integration, 1) / 1000.0
        values = []
        for level, section in zip(self._levels(None), self._sections):
            rms = level / math.sqrt(section.bandwidth * 1e6 * seconds)
            values.append(round(rms * (1.0 + self._random.gauss(0.0, 0.05)), 6))
        return values

    def set_section(self, section: int | str, start_freq: float | str,
                    bandwidth: float | str, feed: int | str, mode: str,
                    sample_rate: float | str, bins: int | str) -> None:
        """Configure ``section`` (-1: all); :data:`UNCHANGED` keeps a setting.

        Every value is checked before any is applied.
        """
        if section == UNCHANGED:
            raise BackendError("section * not allowed: give a section number or -1 for all")
        number = _integer(section, "section")
        if number != -1:
            if not 0 <= number < self._count:
                raise BackendError(f"section {number} out of range 0..{self._count - 1}"
                                   " (-1 for all)")
        changes: dict[str, Any] = {}
        if start_freq != UNCHANGED:
            changes["start_freq"] = _number(start_freq, "frequency")
            _within(changes["start_freq"], self.FREQUENCY_RANGE, "frequency", "MHz")
        if bandwidth != UNCHANGED:
            changes["bandwidth"] = _number(bandwidth, "bandwidth")
            _within(changes["bandwidth"], self.BANDWIDTH_RANGE, "bandwidth", "MHz")
        if feed != UNCHANGED:
            changes["feed"] = self._feed(feed)
        if mode != UNCHANGED:
            changes["mode"] = MODES.get(str(mode).lower())
            if changes["mode"] is None:
                raise BackendError(f"mode {mode!r} unknown: use 0 1 2 LCP RCP CP Stokes"
                                   " or FullStokes")
        if sample_rate != UNCHANGED:
            changes["sample_rate"] = _number(sample_rate, "sample-rate")
            _within(changes["sample_rate"], self.SAMPLE_RATE_RANGE, "sample-rate", "MHz")
        if bins != UNCHANGED:
            changes["bins"] = _integer(bins, "bins")
            _within(changes["bins"], self.BINS_RANGE, "bins")
            if changes["bins"] & (changes["bins"] - 1):
                raise BackendError(f"bins {changes['bins']} not a power of two")
        self._idle("set-section")
        targets = range(self._count) if number == -1 else (number,)
        for index in targets:
            self._sections[index] = replace(self._sections[index], **changes)

    def _feed(self, feed: Any) -> int:
        value = _integer(feed, "feed")
        _within(value, (0, self.FEEDS - 1), "feed")
        return value

    def cal_on(self, interleave: int = 0) -> None:
        """Calibration mark every ``interleave`` samples; 0 switches it off."""
        value = _integer(interleave, "interleave")
        if value < 0:
            raise BackendError(f"interleave {value} negative")
        self.interleave = value

    def set_filename(self, filename: str) -> None:
        """Remember the metadata file to merge."""
        if not filename:
            raise BackendError("filename empty")
        self.filename = filename

    def convert_data(self) -> None:
        """Convert the acquired data (refused while acquiring)."""
        self._idle("convert-data")
        self.conversions += 1

    def set_enable(self, feed1: int, feed2: int) -> None:
        """Enable the two given feeds."""
        self.enabled_feeds = (self._feed(feed1), self._feed(feed2))

    def end_schedule(self) -> None:
        """The schedule is over."""
        self.schedule_ended = True

    def park(self) -> None:
        """Stop acquiring, cancel pending start/stop and switch the mark off."""
        if self.acquiring:
            self._end()
        self._cancel_pending()
        self.interleave = 0
        self.parked = True

    def set_shift(self, shift: int) -> None:
        """Set the shift."""
        value = _integer(shift, "shift")
        _within(value, self.SHIFT_RANGE, "shift")
        self.shift = value

    # -- acquisition hooks ------------------------------------------------

    def start_acquisition(self) -> None:
        """Begin acquiring: remember when."""
        self.started_at = self.clock.seconds()
        self.stopped_at = None
        self.parked = False
        self.schedule_ended = False
        _log.info("acquisition started")

    def stop_acquisition(self) -> None:
        """Stop acquiring: remember when."""
        self.stopped_at = self.clock.seconds()
        _log.info("acquisition stopped")


class SimulatorHandler(DBProtocolHandler):
    """Serves a :class:`BackendSimulator`, applying its injected faults.

    Before a request reaches the simulator: a pending garbage fault answers
    it with :data:`~discosbackend.faults.GARBAGE`; a delay holds it on the
    simulator's clock; a failure answers ``fail`` with its reason.  A
    pending disconnect closes the connection after the reply.
    """

    backend: BackendSimulator

    def __init__(self, backend: BackendSimulator, **options: Any) -> None:
        super().__init__(backend, **options)  # threaded and the others: as DBProtocolHandler

    @property
    def faults(self) -> Faults:
        """The simulator's faults."""
        return self.backend.faults

    def handle(self, message: Message) -> Reply:
        faults = self.backend.faults
        name = message.name
        if faults.take_garbage(name):
            return RawReply(GARBAGE)
        close = faults.take_disconnect(name)
        seconds = faults.delay_for(name)
        if seconds > 0:
            answer: Reply = task.deferLater(self.backend.clock, seconds, self._answer_now, message)
        elif close:
            answer = defer.maybeDeferred(self._answer_now, message)  # its error too, then close
        else:
            answer = self._answer_now(message)
        return CloseAfter(answer) if close else answer

    def _answer_now(self, message: Message) -> Reply:
        reason = self.backend.faults.failure_for(message.name)
        if reason is not None and message.name in self.commands:
            raise BackendError(reason)
        return super().handle(message)
