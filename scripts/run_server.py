#!/usr/bin/env python3
"""How to serve your own backend: a complete, annotated example.

Run it with ``python scripts/run_server.py`` and talk to it with
``nc 127.0.0.1 8978`` (``?get-tpi``, ``?start``, ``?stop``, ...).  The same
class can be served by the command line, with its options and clean
shutdown: ``cd scripts && discos-backend serve --backend run_server:MyBackend``.
"""

from __future__ import annotations

import sys

from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from discosbackend import server
from discosbackend.backend import Backend, BackendError
from discosbackend.handlers import DBProtocolHandler

log = Logger()


class MyBackend(Backend):
    """A backend with one total-power channel per feed of a two-feed receiver.

    Override only the commands the hardware supports: the others answer
    ``fail`` (``not supported``) on their own.  ``status``, ``time``,
    ``version`` and the start/stop scheduling (immediate or time-tagged)
    come from :class:`Backend`.
    """

    def __init__(self) -> None:
        super().__init__()  # the clock is the reactor; tests may pass a task.Clock
        self.integration = 0
        self.configuration = "unconfigured"

    # Each command is a method; its arguments arrive already parsed and
    # checked (here an int >= 0).  Return nothing for a plain "ok".
    def set_integration(self, integration: int) -> None:
        """``?set-integration,40`` -> ``!set-integration,ok``."""
        if integration > 10_000:
            # Raise BackendError to refuse: the client gets
            # "!set-integration,fail,integration 20000 too long: max 10000 ms".
            # Keep the key word first and no commas: DISCOS reads the first word.
            raise BackendError(f"integration {integration} too long: max 10000 ms")
        self.integration = integration

    # Return a value (or a list/tuple of values) for "ok" with values.
    def get_integration(self) -> int:
        """``?get-integration`` -> ``!get-integration,ok,40``."""
        return self.integration

    def get_configuration(self) -> str:
        """``?get-configuration`` -> ``!get-configuration,ok,unconfigured``."""
        return self.configuration

    def set_configuration(self, configuration: str) -> None:
        """``?set-configuration,SK00`` -> ``!set-configuration,ok``."""
        self.configuration = configuration

    # frequency and bandwidth are None when DISCOS sends "0,0" (the default).
    # A method may also return a Deferred or be "async def" when the hardware
    # answers later: the server keeps serving meanwhile.
    def get_tpi(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        """``?get-tpi,0,0`` -> ``!get-tpi,ok,812.5,790.25`` (one value per section)."""
        return [812.5, 790.25]

    # start and stop (now or at a time) are handled by Backend, which calls
    # these two hooks at the right moment.  Raise BackendError to refuse.
    def start_acquisition(self) -> None:
        """Drive the hardware: start acquiring now."""
        log.info("acquisition started")

    def stop_acquisition(self) -> None:
        """Drive the hardware: stop acquiring now."""
        log.info("acquisition stopped")


def main() -> None:
    """Serve MyBackend on port 8978 until Ctrl-C, logging to stderr."""
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)],
                                     redirectStandardIO=False)
    server.run_server(server.DEFAULT_PORT, DBProtocolHandler(MyBackend()))


if __name__ == "__main__":
    main()
