"""An example of a backend that needs settings: the address of its board.

Served with ``discos-backend serve --backend mybackend:make_backend -o
host=... -o port=...`` (from this directory): ``make_backend`` is a factory,
called with the ``-o`` options as keyword arguments.  With ``-o
simulate=true`` it talks to no board at all.
"""

from __future__ import annotations

import socket

from discosbackend.backend import Backend


class Spectrometer(Backend):
    """A spectrometer whose board answers on ``host:port`` (TCP)."""

    def __init__(self, host: str, port: int = 7000, simulate: bool = False) -> None:
        super().__init__()
        self.host, self.port, self.simulate = host, port, simulate
        self.board: socket.socket | None = None

    def open(self) -> None:
        """Connect to the board (a refused connection stops the server from starting)."""
        if not self.simulate:
            self.board = socket.create_connection((self.host, self.port), timeout=5)

    def close(self) -> None:
        """Let the board go."""
        super().close()
        if self.board is not None:
            self.board.close()

    def get_tpi(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        """Total power per section (fixed values when simulating)."""
        return [812.5, 790.25]


def make_backend(host: str, port: int = 7000, simulate: bool = False) -> Spectrometer:
    """The backend, made from the ``-o`` options."""
    return Spectrometer(host, port, simulate)
