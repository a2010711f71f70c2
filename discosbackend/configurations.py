"""Backend configurations as the telescope defines them: sections, feeds and nodding.

A configuration (``SK77``, ``SKARAB_1``...) fixes how many sections a
backend has and, for each, its feed, polarization, bandwidth and bins.  It
belongs to a *family* (the backend that knows it: Sardara, SKARAB...) whose
nodding rule says which inputs ``get-tpi``/``get-rms`` report after
``set-enable``.  The real DISCOS client expects exactly that many values.

A table of configurations is a TOML file.  :func:`srt` reads the table of
SRT that ships with the package (``srt_configurations.toml``, the commented
reference of the format); :func:`load` reads another site's::

    [families]
    Sardara = { nodding = "both-feeds" }

    [configurations.SK00]
    family = "Sardara"
    bandwidth = 1500                    # MHz: one for all sections, or one each
    bins = 1024
    feeds = [0, 0]                      # one per section
    polarizations = ["L", "R"]          # L R or S (full Stokes), one per section
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Callable, Mapping, TypeVar

__all__ = ["Configuration", "SectionLayout", "Table", "ConfigurationError", "MODES",
           "ALL_FEEDS", "BOTH_FEEDS", "DISTINCT_FEEDS", "NODDING_RULES", "SRT", "srt", "load",
           "parse", "table_named"]

#: The feed number of ``set-enable`` that means every feed: the real SKARAB
#: client sends ``?set-enable,7,7`` for all seven feeds of the K-band receiver.
ALL_FEEDS = 7
#: Nodding rule: after ``set-enable,f1,f2`` the inputs of f1 then those of f2,
#: even when f1 == f2 (Sardara: always 4 inputs).
BOTH_FEEDS = "both-feeds"
#: Nodding rule: the inputs of each distinct feed once (SKARAB: 4 inputs when
#: the feeds differ, 2 when they are the same).
DISTINCT_FEEDS = "distinct-feeds"
#: The nodding rules a family may have.
NODDING_RULES = (BOTH_FEEDS, DISTINCT_FEEDS)
#: What :func:`table_named` takes for the table of SRT that ships with the package.
SRT = "srt"
#: Polarizations and ``set-section`` modes (lower case) and the name each is kept as.
MODES = {
    "0": "LCP", "1": "RCP", "2": "Stokes", "l": "LCP", "r": "RCP", "s": "Stokes",
    "lcp": "LCP", "rcp": "RCP", "cp": "CP", "stokes": "Stokes", "fullstokes": "Stokes",
}

_SRT_FILE = "srt_configurations.toml"
_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_ENTRY_KEYS = ("family", "bandwidth", "bins", "feeds", "polarizations")
T = TypeVar("T")


class ConfigurationError(ValueError):
    """A table of configurations that cannot be read or makes no sense; says where and why."""


@dataclass(frozen=True)
class SectionLayout:
    """One section as a configuration defines it.  Bandwidth in MHz."""

    feed: int
    polarization: str
    bandwidth: float
    bins: int


@dataclass(frozen=True)
class Configuration:
    """A configuration: its name, its family and nodding rule, its sections."""

    name: str
    family: str
    nodding: str
    sections: tuple[SectionLayout, ...]

    def inputs(self, enabled: tuple[int, int] | None = None) -> tuple[tuple[int, int], ...]:
        """The inputs ``get-tpi``/``get-rms`` report, in order: (section index, feed) pairs.

        ``enabled`` is the pair of feeds of the last ``set-enable``.  With
        none, or :data:`ALL_FEEDS` in it, every section is reported with its
        own feed.  Else the sections of each feed the nodding rule picks; a
        feed with no section of its own (a single-beam configuration nodding
        across the receiver's feeds) borrows those of the first section's feed.
        """
        if enabled is None or ALL_FEEDS in enabled:
            return tuple((index, section.feed) for index, section in enumerate(self.sections))
        first, second = enabled
        feeds = ((first,) if self.nodding == DISTINCT_FEEDS and first == second
                 else (first, second))
        return tuple((index, feed) for feed in feeds for index in self._sections_of(feed))

    def count(self, enabled: tuple[int, int] | None = None) -> int:
        """How many values ``get-tpi``/``get-rms`` give, and the real client expects."""
        return len(self.inputs(enabled))

    def _sections_of(self, feed: int) -> tuple[int, ...]:
        own = tuple(index for index, section in enumerate(self.sections) if section.feed == feed)
        return own or self._sections_of(self.sections[0].feed)


#: A table of configurations, by name, in the order of its file.
Table = Mapping[str, Configuration]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(value: Any) -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError("a number > 0")
    return float(value)


def _positive_integer(value: Any) -> int:
    if not _is_number(value) or value != int(value) or value <= 0:
        raise ValueError("an integer > 0")
    return int(value)


def _feed(value: Any) -> int:
    if not _is_number(value) or value != int(value) or value < 0:
        raise ValueError("an integer >= 0")
    return int(value)


def _polarization(value: Any) -> str:
    mode = MODES.get(value.lower()) if isinstance(value, str) else None
    if mode is None:
        raise ValueError("L R S or a set-section mode (LCP RCP CP Stokes FullStokes 0 1 2)")
    return mode


def _each(values: Any, key: str, parse: Callable[[Any], T], where: str) -> list[T]:
    if not isinstance(values, list) or not values:
        raise ConfigurationError(f"{where}: {key} must be a non-empty list")
    parsed = []
    for value in values:
        try:
            parsed.append(parse(value))
        except ValueError as error:
            raise ConfigurationError(f"{where}: {key} {value!r} is not {error}") from None
    return parsed


def _per_section(value: Any, key: str, parse: Callable[[Any], T], count: int,
                 where: str) -> list[T]:
    """One value for every section, or a list of one per section."""
    values = _each(value if isinstance(value, list) else [value], key, parse, where)
    if isinstance(value, list) and len(values) != count:
        raise ConfigurationError(f"{where}: {key} has {len(values)} values for {count} "
                                 "sections (give one value or one per section)")
    return values * count if not isinstance(value, list) else values


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be a table")
    return value


def _only(entry: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        raise ConfigurationError(f"{where}: unknown key {', '.join(unknown)} "
                                 f"(the keys are {', '.join(keys)})")
    missing = [key for key in keys if key not in entry]
    if missing:
        raise ConfigurationError(f"{where}: {', '.join(missing)} missing")


def _configuration(name: str, value: Any, families: dict[str, str],
                   where: str) -> Configuration:
    if not _NAME_RE.fullmatch(name):
        raise ConfigurationError(f"{where}: a name is 1 to 32 letters digits - or _")
    entry = _table(value, where)
    _only(entry, _ENTRY_KEYS, where)
    family = entry["family"]
    if family not in families:
        raise ConfigurationError(f"{where}: family {family!r} unknown (declare it under "
                                 "[families])")
    feeds = _each(entry["feeds"], "feeds", _feed, where)
    polarizations = _each(entry["polarizations"], "polarizations", _polarization, where)
    if len(feeds) != len(polarizations):
        raise ConfigurationError(f"{where}: {len(feeds)} feeds but {len(polarizations)} "
                                 "polarizations (one of each per section)")
    bandwidths = _per_section(entry["bandwidth"], "bandwidth", _positive_number, len(feeds),
                              where)
    bins = _per_section(entry["bins"], "bins", _positive_integer, len(feeds), where)
    return Configuration(name, family, families[family], tuple(
        SectionLayout(*section) for section in zip(feeds, polarizations, bandwidths, bins)))


def parse(text: str, source: str = "<table>") -> Table:
    """The configurations of a TOML table; ``source`` names it in errors.

    Raises :class:`ConfigurationError` saying where and what is wrong.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{source}: {error}") from None
    _only(data, ("families", "configurations"), source)
    families: dict[str, str] = {}
    for family, value in _table(data["families"], f"{source}: families").items():
        where = f"{source}: family {family}"
        entry = _table(value, where)
        _only(entry, ("nodding",), where)
        if entry["nodding"] not in NODDING_RULES:
            raise ConfigurationError(f"{where}: nodding {entry['nodding']!r} unknown "
                                     f"(use {' or '.join(NODDING_RULES)})")
        families[family] = entry["nodding"]
    entries = _table(data["configurations"], f"{source}: configurations")
    if not entries:
        raise ConfigurationError(f"{source}: no configurations")
    return MappingProxyType({
        name: _configuration(name, value, families, f"{source}: configuration {name}")
        for name, value in entries.items()})


def load(path: str) -> Table:
    """The configurations of the TOML file at ``path``; :class:`ConfigurationError` if bad."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigurationError(f"cannot read {path}: {reason}") from None
    return parse(text, path)


@cache
def srt() -> Table:
    """The configurations of SRT (Sardara and SKARAB), shipped with the package."""
    text = resources.files("discosbackend").joinpath(_SRT_FILE).read_text(encoding="utf-8")
    return parse(text, _SRT_FILE)


def table_named(name: str) -> Table:
    """:func:`srt` for ``srt``, else the table in the file ``name`` (:func:`load`)."""
    return srt() if name == SRT else load(name)
