"""Backends written the way hardware backends are: plain blocking calls, settings.

:class:`SleepyBackend` talks to its "hardware" with ``time.sleep`` and with
calls that block until the test lets them go (:attr:`SleepyBackend.gate`),
and records what ran, in which order and on which thread.  It takes its
settings as keyword arguments, so ``discos-backend serve --backend
sleepy_backends:make_backend -o host=10.0.0.5 -o port=7000`` serves it
(run from this directory, which makes the module importable).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from discosbackend.backend import Backend, BackendError, blocking
from discosbackend.commands import FLOAT, Argument, command


class SleepyBackend(Backend):
    """Blocks like hardware does; remembers what it was asked, and where."""

    __test__ = False

    def __init__(self, host: str = "127.0.0.1", port: int = 7000, *,
                 fail_open: bool = False, clock: Any = None) -> None:
        super().__init__(clock)
        self.host = host
        self.port = port
        self.fail_open = fail_open
        self.integration = 0
        #: What ran, in order: (event, thread name).
        self.calls: list[tuple[str, str]] = []
        #: Set while ``sleep`` sleeps.
        self.sleeping = threading.Event()
        #: ``wait`` blocks until this is set...
        self.gate = threading.Event()
        #: ... and sets this once it has begun.
        self.waiting = threading.Event()

    def _record(self, event: str) -> None:
        self.calls.append((event, threading.current_thread().name))

    @property
    def events(self) -> list[str]:
        """What ran, in order."""
        return [event for event, _ in self.calls]

    def open(self) -> None:
        self._record("open")
        if self.fail_open:
            raise ConnectionRefusedError(f"no spectrometer at {self.host}:{self.port}")

    def close(self) -> None:
        super().close()
        self._record("close")
        print(f"closed after {', '.join(self.events)}", flush=True)

    @command("sleep", Argument("seconds", FLOAT), summary="sleep, as hardware I/O does")
    def sleep(self, seconds: float) -> list[str]:
        """Block for ``seconds``."""
        self._record("sleep")
        self.sleeping.set()
        time.sleep(seconds)
        self.sleeping.clear()
        self._record("slept")
        return ["slept"]

    @command("wait", summary="block until the test opens the gate")
    def wait(self) -> list[str]:
        """Block until :attr:`gate` is set."""
        self._record("wait")
        self.waiting.set()
        if not self.gate.wait(30):
            raise BackendError("gate never opened")
        self._record("waited")
        return ["waited"]

    @command("is-sleeping", summary="whether sleep is sleeping now")
    @blocking(False)
    def is_sleeping(self) -> list[int]:
        """Answered on the reactor even when threaded: 1 while ``sleep`` runs."""
        return [int(self.sleeping.is_set())]

    @command("options", summary="the settings it was made with")
    def options(self) -> list[str]:
        """``host='10.0.0.5'``, ``port=7000``: the values and their types."""
        return [f"host={self.host!r}", f"port={self.port!r}"]

    def get_integration(self) -> int:
        self._record("get_integration")
        return self.integration

    def set_integration(self, integration: int) -> None:
        self._record(f"set_integration {integration}")
        self.integration = integration

    def get_tpi(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        self._record("get_tpi")
        return [903.21, 1240.57]

    def start_acquisition(self) -> None:
        self._record("start_acquisition")

    def stop_acquisition(self) -> None:
        self._record("stop_acquisition")


def make_backend(host: str, port: int = 7000, fail_open: bool = False) -> SleepyBackend:
    """A factory, as ``--backend sleepy_backends:make_backend -o host=...`` calls it."""
    return SleepyBackend(host, port, fail_open=fail_open)
