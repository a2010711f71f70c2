"""The watchdog: a warning when answering requests blocked the reactor.

While the reactor answers a packet of requests it does nothing else: other
connections, time-tagged start/stop and signals wait.  A backend method
that blocks (hardware I/O, ``time.sleep``) should run in the worker thread
instead.  :class:`Watchdog` times each packet (two clock readings per
packet, not per request: the request path stays as fast as it was) and
logs a warning naming the request, the backend method and the time when it
took longer than a threshold.  When all is well it logs nothing.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

from twisted.logger import Logger

from discosbackend.grammar import ENCODING, UNDEFINED_NAME, name_of

__all__ = ["Watchdog", "DEFAULT_THRESHOLD"]

#: Seconds the reactor may spend on one packet of requests before a warning.
DEFAULT_THRESHOLD = 0.2
_SHOWN = 60  # characters of a request shown in the warning

_log = Logger()


class Watchdog:
    """Warns when answering a packet of requests kept the reactor longer than ``threshold``.

    ``handler`` (a :class:`~discosbackend.handlers.DBProtocolHandler` names
    the backend method) and ``timer`` (seconds, ``time.perf_counter`` by
    default; tests pass a fake) are what the warning is made from.
    """

    def __init__(self, handler: Any, threshold: float = DEFAULT_THRESHOLD,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        if not 0 < threshold < math.inf:
            raise ValueError(f"the watchdog's threshold must be positive, not {threshold!r}")
        self.handler = handler
        self.threshold = threshold
        self.timer = timer

    def check(self, started: float, lines: Sequence[bytes]) -> None:
        """Warn if more than the threshold has passed since ``started`` (from ``timer``).

        ``lines`` are the requests answered meanwhile.
        """
        elapsed = self.timer() - started
        if elapsed > self.threshold:
            self.warn(elapsed, lines)

    def warn(self, elapsed: float, lines: Sequence[bytes]) -> None:
        """Log that answering ``lines`` blocked the reactor for ``elapsed`` seconds."""
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        what = lines[0].decode(ENCODING, "replace") if lines else "a packet"
        if len(what) > _SHOWN:
            what = what[:_SHOWN] + "…"
        if len(lines) > 1:
            what = f"{len(lines)} requests ({what} first)"
        methods = sorted({method for method in map(self._method, lines) if method})
        if methods:
            what += f" (backend method {', '.join(methods)})"
        _log.warn("the reactor was blocked {elapsed:.3f} s answering {what}: meanwhile no "
                  "other connection, time-tagged start/stop or signal was served. Run "
                  "blocking backend code in the worker thread: mark the method with "
                  "@discosbackend.backend.blocking, serve with DBProtocolHandler(backend, "
                  "threaded=True) or discos-backend serve --threaded",
                  elapsed=elapsed, what=what)

    def _method(self, line: bytes) -> str | None:
        """The backend method answering ``line``, e.g. ``get_tpi()``, if known."""
        name = name_of(line)
        command = getattr(self.handler, "commands", {}).get(name) \
            if name != UNDEFINED_NAME else None
        method = getattr(command, "method", None)
        return f"{method}()" if method else None
