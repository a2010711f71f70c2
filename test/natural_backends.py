"""A backend written the way people write them: numpy, strings, clocks.

Every method returns what a backend author naturally has at hand — numpy
arrays and scalars, a timestamp as a string or a ``datetime``, a generator
— instead of plain floats and lists.  The conformance suite must pass
against it as against the simulator.
"""

from __future__ import annotations

import datetime
from typing import Any, Iterator

import numpy as np

from discosbackend.simulator import BackendSimulator


class NaturalBackend(BackendSimulator):
    """The simulator, answering with numpy values, strings and datetimes."""

    def status(self) -> tuple[Any, Any, Any]:  # type: ignore[override]
        _, word, acquiring = super().status()
        return f"{self.clock.seconds():.7f}", np.str_(word), np.bool_(acquiring)

    def time(self) -> datetime.datetime:  # type: ignore[override]
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.timezone.utc)

    def get_tpi(self, frequency: float | None = None,
                bandwidth: float | None = None) -> Any:
        return np.asarray(super().get_tpi(frequency, bandwidth), dtype=np.float32)

    def get_tp0(self, frequency: float | None = None,
                bandwidth: float | None = None) -> Any:
        return np.array(super().get_tp0(frequency, bandwidth))

    def get_rms(self) -> Iterator[Any]:  # type: ignore[override]
        return (np.float64(value) for value in super().get_rms())

    def get_integration(self) -> Any:
        return np.int32(super().get_integration())

    def get_configuration(self) -> Any:
        return np.str_(super().get_configuration())
