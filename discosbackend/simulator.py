"""A simulated backend to test DISCOS (and clients) against, faults included.

:class:`BackendSimulator` keeps the state a real total-power/spectrometer
backend keeps (configuration, sections, integration, calibration mark,
acquisition, file name, enabled feeds, shift), checks requests against
believable hardware limits, and answers ``get-tpi``/``get-tp0``/``get-rms``
with noisy levels that follow the bandwidth, the feed, the polarization and
the calibration mark.

It knows the configurations of a table (:mod:`discosbackend.configurations`;
SRT's by default): ``set-configuration`` loads one, sections and nodding
rule included, and ``get-tpi``/``get-rms`` then give exactly as many values
as the real DISCOS client expects.  It never refuses ``set-integration``,
``cal-on``, ``set-enable`` or ``set-shift`` for a value a schedule sends,
while acquiring included: the real client ends on such a ``fail``.

Serve it with :class:`SimulatorHandler`, which applies the faults injected
through :attr:`BackendSimulator.faults` (see :mod:`discosbackend.faults`)::

    simulator = BackendSimulator(sections=4)
    server.run_server(8978, SimulatorHandler(simulator))

or just run ``discos-backend serve``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from discosbackend.backend import UNCHANGED, Backend
from discosbackend.commands import commands_of
from discosbackend.configurations import (ALL_FEEDS, BOTH_FEEDS, MODES, Configuration,
                                          ConfigurationError, SectionLayout, Table, srt)
from discosbackend.errors import BackendError
from discosbackend.faults import GARBAGE, Faults
from discosbackend.grammar import Message
from discosbackend.handlers import CloseAfter, DBProtocolHandler, RawReply, Reply
from discosbackend.wording import counted

__all__ = ["BackendSimulator", "SimulatorHandler", "Section", "UNCONFIGURED", "MODES"]

#: What ``get-configuration`` answers before a configuration is set.
UNCONFIGURED = "unconfigured"

_CAL_FRACTION = 0.12      # how much the calibration mark adds to the power
_LEVEL_NOISE = 0.002      # relative noise of a tpi reading
_ZERO_LEVEL = 0.4         # mean tp0 (counts)
_START_FREQUENCY = 100.0  # MHz, of every section a configuration loads
_KEPT_MODES = tuple(dict.fromkeys(MODES.values()))
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
    """A believable backend with injectable faults.

    Before any ``set-configuration`` it has ``sections`` sections, pairs of
    LCP/RCP per feed.  ``configurations`` is the table it knows (SRT's
    unless given); ``clock`` times start/stop, delays and ``time`` (the
    reactor unless given, e.g. a ``task.Clock`` in tests); ``seed`` makes
    the gains and the noise repeatable.  The class attributes hold the
    hardware limits: subclass to change them.  Faults are set through
    :attr:`faults` and take effect when the simulator is served through
    :class:`SimulatorHandler` (the status word takes effect in any case).
    Raises ``ValueError`` for a bad ``sections``, and its subclass
    :class:`~discosbackend.configurations.ConfigurationError` for a
    configuration of the table beyond the limits.
    """

    #: Feeds of the receiver, numbered 0..FEEDS-1 (the K-band receiver of SRT has 7).
    FEEDS = 7
    #: Start frequency limits, MHz.
    FREQUENCY_RANGE = (0.0, 100_000.0)
    #: Bandwidth limits, MHz.
    BANDWIDTH_RANGE = (1.0, 2300.0)
    #: Sample rate limits, MHz.
    SAMPLE_RATE_RANGE = (0.001, 10_000.0)
    #: Bins limits; bins must also be a power of two.
    BINS_RANGE = (1, 65_536)
    #: Longest integration, ms: what a 32-bit signed integer holds.
    MAX_INTEGRATION = 2**31 - 1
    #: Shift limits: a shift past the width of a 64-bit word is meaningless.
    SHIFT_RANGE = (-63, 63)
    #: Most sections a simulator can have.
    MAX_SECTIONS = 1024
    #: The nodding rule before any configuration is loaded (Sardara's).
    UNCONFIGURED_NODDING = BOTH_FEEDS

    def __init__(self, sections: int = 2, clock: IReactorTime | None = None,
                 seed: int | None = None, configurations: Table | None = None) -> None:
        super().__init__(clock)
        if isinstance(sections, bool) or not isinstance(sections, int) \
                or not 1 <= sections <= self.MAX_SECTIONS:
            raise ValueError(f"sections must be an integer from 1 to {self.MAX_SECTIONS},"
                             f" not {sections!r}")
        self._count = sections
        #: The configurations ``set-configuration`` knows, by name.
        self.configurations: Table = configurations if configurations is not None else srt()
        self._loads = {name: self._sections_of(configuration)
                       for name, configuration in self.configurations.items()}
        self._random = random.Random(seed)
        #: Counts per MHz of bandwidth of the total power, per (feed, mode).
        self.gains = {(feed, mode): round(self._random.uniform(0.55, 0.85), 4)
                      for feed in range(self.FEEDS) for mode in _KEPT_MODES}
        self._zero = {key: _ZERO_LEVEL * self._random.uniform(0.5, 1.5) for key in self.gains}
        #: The configuration in use: which feed each section carries, and the nodding rule.
        self.layout = self.default_layout()
        self._sections = self.default_sections()
        self.configuration = UNCONFIGURED
        self.integration = 0
        self._integration_in_use = 0
        self.interleave = 0
        self.filename: str | None = None
        #: The feeds of the last ``set-enable`` (``None`` before one): see :attr:`layout`.
        self.enabled_feeds: tuple[int, int] | None = None
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
        """How many sections the simulator has now."""
        return len(self._sections)

    @property
    def sections(self) -> tuple[Section, ...]:
        """The settings of every section, in order."""
        return tuple(self._sections)

    @property
    def calibration_on(self) -> bool:
        """Whether the calibration mark is on (``cal-on`` with an interleave > 0)."""
        return self.interleave > 0

    @property
    def integration_in_use(self) -> int:
        """The integration (ms) the levels follow: the one the acquisition started with.

        Like real hardware, a ``set-integration`` while acquiring applies from
        the next start; when idle this is the integration set.
        """
        return self._integration_in_use if self.acquiring else self.integration

    def default_layout(self) -> Configuration:
        """The layout before any configuration: ``sections`` sections, LCP/RCP pairs per feed."""
        return Configuration(UNCONFIGURED, "", self.UNCONFIGURED_NODDING, tuple(
            SectionLayout(feed=min(index // 2, self.FEEDS - 1),
                          polarization="LCP" if index % 2 == 0 else "RCP",
                          bandwidth=1500.0, bins=1024)
            for index in range(self._count)))

    def default_sections(self) -> list[Section]:
        """The sections as they are before any ``set-configuration`` or ``set-section``."""
        return self._sections_of(self.default_layout())

    def _sections_of(self, configuration: Configuration) -> list[Section]:
        """The sections ``configuration`` loads; :class:`ConfigurationError` beyond the limits."""
        if len(configuration.sections) > self.MAX_SECTIONS:
            raise ConfigurationError(f"configuration {configuration.name}: "
                             f"{len(configuration.sections)} sections; at most "
                             f"{self.MAX_SECTIONS}")
        sections = []
        for layout in configuration.sections:
            try:
                settings = self._checked(start_freq=_START_FREQUENCY,
                                         bandwidth=layout.bandwidth, feed=layout.feed,
                                         mode=layout.polarization,
                                         sample_rate=2 * layout.bandwidth, bins=layout.bins)
            except BackendError as error:
                raise ConfigurationError(f"configuration {configuration.name}: {error}") from None
            sections.append(Section(**settings))
        return sections

    def describe(self) -> str:
        """A short description, e.g. ``BackendSimulator (2 sections, 20 configurations)``."""
        return (f"{type(self).__name__} ({counted(self._count, 'section')}, "
                f"{counted(len(self.configurations), 'configuration')})")

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
        """Load configuration ``configuration`` (e.g. ``SK77``) of :attr:`configurations`.

        Its sections replace the current ones and every feed is reported
        again (as before any ``set-enable``).
        """
        sections = self._loads.get(configuration) if isinstance(configuration, str) else None
        if sections is None:
            raise BackendError(f"configuration {configuration!r} unknown: use "
                               + " ".join(self.configurations))
        self._idle("set-configuration")
        self.configuration = configuration
        self.layout = self.configurations[configuration]
        self._sections = list(sections)
        self.enabled_feeds = None

    def get_integration(self) -> int:
        """The integration time in ms (0 before set)."""
        return self.integration

    def set_integration(self, integration: int) -> None:
        """Set the integration time, ms; while acquiring, from the next start."""
        value = _integer(integration, "integration")
        _within(value, (0, self.MAX_INTEGRATION), "integration", "ms")
        self.integration = value

    def _inputs(self) -> list[tuple[int, Section]]:
        """What get-tpi/get-rms report: the feed and the section of each input."""
        return [(feed, self._sections[index])
                for index, feed in self.layout.inputs(self.enabled_feeds)]

    def _levels(self, inputs: list[tuple[int, Section]], bandwidth: float | None,
                zero: bool = False) -> list[float]:
        if bandwidth is not None:
            _within(_number(bandwidth, "bandwidth"), self.BANDWIDTH_RANGE, "bandwidth", "MHz")
        values = []
        for feed, section in inputs:
            key = (feed, section.mode)
            if zero:
                level = self._zero[key] + self._random.gauss(0.0, 0.02)
            else:
                power = self.gains[key] * (bandwidth or section.bandwidth)
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
        """Total power per input; ``bandwidth`` (MHz) overrides the sections' own."""
        self._check_frequency(frequency)
        return self._levels(self._inputs(), bandwidth)

    def get_tp0(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        """Zero-level power per input: a little above zero."""
        self._check_frequency(frequency)
        return self._levels(self._inputs(), bandwidth, zero=True)

    def get_rms(self) -> list[float]:
        """The rms of the power per input, as the radiometer equation has it."""
        seconds = max(self.integration_in_use, 1) / 1000.0
        inputs = self._inputs()
        values = []
        for level, (_, section) in zip(self._levels(inputs, None), inputs):
            rms = level / math.sqrt(section.bandwidth * 1e6 * seconds)
            values.append(round(rms * (1.0 + self._random.gauss(0.0, 0.05)), 6))
        return values

    def _checked(self, **values: Any) -> dict[str, Any]:
        """The section settings given (none :data:`UNCHANGED`), checked and normalized."""
        checked: dict[str, Any] = {}
        if "start_freq" in values:
            checked["start_freq"] = _number(values["start_freq"], "frequency")
            _within(checked["start_freq"], self.FREQUENCY_RANGE, "frequency", "MHz")
        if "bandwidth" in values:
            checked["bandwidth"] = _number(values["bandwidth"], "bandwidth")
            _within(checked["bandwidth"], self.BANDWIDTH_RANGE, "bandwidth", "MHz")
        if "feed" in values:
            checked["feed"] = _integer(values["feed"], "feed")
            _within(checked["feed"], (0, self.FEEDS - 1), "feed")
        if "mode" in values:
            checked["mode"] = MODES.get(str(values["mode"]).lower())
            if checked["mode"] is None:
                raise BackendError(f"mode {values['mode']!r} unknown: use 0 1 2 LCP RCP CP "
                                   "Stokes or FullStokes")
        if "sample_rate" in values:
            checked["sample_rate"] = _number(values["sample_rate"], "sample-rate")
            _within(checked["sample_rate"], self.SAMPLE_RATE_RANGE, "sample-rate", "MHz")
        if "bins" in values:
            checked["bins"] = _integer(values["bins"], "bins")
            _within(checked["bins"], self.BINS_RANGE, "bins")
            if checked["bins"] & (checked["bins"] - 1):
                raise BackendError(f"bins {checked['bins']} not a power of two")
        return checked

    def set_section(self, section: int | str, start_freq: float | str,
                    bandwidth: float | str, feed: int | str, mode: str,
                    sample_rate: float | str, bins: int | str) -> None:
        """Configure ``section`` (-1: all); :data:`UNCHANGED` keeps a setting.

        Every value is checked before any is applied.  Which feed a section
        carries for ``set-enable`` stays as the configuration wired it.
        """
        if section == UNCHANGED:
            raise BackendError("section * not allowed: give a section number or -1 for all")
        number = _integer(section, "section")
        count = len(self._sections)
        if number != -1 and not 0 <= number < count:
            raise BackendError(f"section {number} out of range 0..{count - 1} (-1 for all)")
        given = {"start_freq": start_freq, "bandwidth": bandwidth, "feed": feed, "mode": mode,
                 "sample_rate": sample_rate, "bins": bins}
        changes = self._checked(**{name: value for name, value in given.items()
                                   if value != UNCHANGED})
        self._idle("set-section")
        targets = range(count) if number == -1 else (number,)
        for index in targets:
            self._sections[index] = replace(self._sections[index], **changes)

    def cal_on(self, interleave: int = 0) -> None:
        """Calibration mark every ``interleave`` samples; 0 switches it off.  At once."""
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

    def _enabled_feed(self, feed: Any) -> int:
        value = _integer(feed, "feed")
        if value != ALL_FEEDS and not 0 <= value < self.FEEDS:
            raise BackendError(f"feed {value} out of range 0..{self.FEEDS - 1} "
                               f"({ALL_FEEDS}: all feeds)")
        return value

    def set_enable(self, feed1: int, feed2: int) -> None:
        """Report the inputs of these two feeds (nodding), or of all with 7.  At once.

        How many inputs that is follows the configuration's nodding rule
        (see :meth:`discosbackend.configurations.Configuration.inputs`).
        """
        self.enabled_feeds = (self._enabled_feed(feed1), self._enabled_feed(feed2))

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
        """Set the shift.  At once."""
        value = _integer(shift, "shift")
        _within(value, self.SHIFT_RANGE, "shift")
        self.shift = value

    # -- acquisition hooks ------------------------------------------------

    def start_acquisition(self) -> None:
        """Begin acquiring: remember when, and the integration to use."""
        self.started_at = self.clock.seconds()
        self.stopped_at = None
        self._integration_in_use = self.integration
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
    pending disconnect closes the connection after the reply.  ``options``
    are :class:`~discosbackend.handlers.DBProtocolHandler`'s (``protocol``...).
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
