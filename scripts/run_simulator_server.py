#!/usr/bin/env python3
"""Serve the bundled backend simulator, like ``discos-backend serve``.

Usage: ``scripts/run_simulator_server.py [--port N] [other serve options]``.
The port defaults to 8978; the fault-injection control endpoint listens on
127.0.0.1 at the port + 1.  Any other option is passed on to
``discos-backend serve`` (see ``discos-backend serve --help``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from discosbackend.cli import main as cli_main
from discosbackend.server import DEFAULT_PORT


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--port`` and run ``discos-backend serve`` with the rest."""
    parser = argparse.ArgumentParser(
        description="Serve the DISCOS backend simulator (options other than --port "
                    "go to 'discos-backend serve').")
    parser.add_argument("--port", default=str(DEFAULT_PORT),
                        help=f"TCP port to listen on (default {DEFAULT_PORT}; 0: any free port)")
    args, rest = parser.parse_known_args(argv)
    return cli_main(["serve", "--port", args.port, *rest])


if __name__ == "__main__":
    sys.exit(main())
