"""Conformance tests for DISCOS backends, in Python or any other language.

- :class:`BackendTestCase`: subclass it, override ``make_backend()`` (or
  set ``address``), and every check becomes a test of your backend.
- ``discos-backend check HOST:PORT``: the same checks against a running
  server, as a report (see :mod:`discosbackend.cli.check`).
- :data:`CHECKS` and :func:`run_checks`: the checks themselves, to run
  them some other way.
- :func:`replay` / :func:`replay_file`: play a recorded session again and
  compare the replies (``discos-backend replay``; ``BackendTestCase.replay``).
"""

from discosbackend.testing.case import BackendTestCase, wait_for
from discosbackend.testing.checks import CHECK_NAMES, CHECKS, Check, check_named
from discosbackend.testing.replay import Report, compare_replies, replay, replay_file
from discosbackend.testing.runner import (ABORTS, ERROR, FAILED, PASSED, SKIPPED, Result,
                                          run_check, run_checks, select_checks)
from discosbackend.testing.session import (CannotConnect, CheckFailed, DiscosAborts,
                                           NotInServerVersion, Session, Settings, connect)

__all__ = [
    "BackendTestCase", "CHECKS", "CHECK_NAMES", "Check", "CheckFailed", "DiscosAborts",
    "run_checks", "run_check", "select_checks", "Result", "PASSED", "FAILED", "ABORTS", "ERROR",
    "SKIPPED", "Settings", "Session", "CannotConnect", "connect", "check_named", "wait_for",
    "NotInServerVersion", "replay", "replay_file", "compare_replies", "Report",
]
