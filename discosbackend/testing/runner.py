"""Run the conformance checks against a server: one check, or a selection.

Each check gets its own connection (so each sees the greeting), opened
before and closed after it.  :func:`run_checks` is what
``discos-backend check`` runs; :func:`run_check` is what each test of
:class:`~discosbackend.testing.BackendTestCase` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from twisted.internet import defer

from discosbackend.client.address import Address
from discosbackend.reactor import or_global
from discosbackend.testing.checks import CHECK_NAMES, CHECKS, Check, check_named
from discosbackend.testing.session import (DISCOS_ABORTS, CannotConnect, CheckFailed,
                                           DiscosAborts, NotInServerVersion, Settings, connect)

__all__ = ["Result", "PASSED", "FAILED", "ABORTS", "ERROR", "SKIPPED", "READ_ONLY_REASON",
           "BY_NAME_REASON", "ABORTS_REASON", "FAILING", "select_checks", "run_check",
           "run_checks"]

PASSED = "passed"
FAILED = "failed"
#: Failed with a reply the real DISCOS client does not survive (a :class:`DiscosAborts`).
ABORTS = "aborts"
#: The check itself broke (a bug in the check, not in the server).
ERROR = "error"
SKIPPED = "skipped"
#: The outcomes that make a run fail.
FAILING = (FAILED, ABORTS, ERROR)
#: How an :data:`ABORTS` result is labelled.
ABORTS_REASON = DISCOS_ABORTS
#: Why a check named in ``skip`` is skipped.
BY_NAME_REASON = "by name"
#: Why a state-changing check is skipped in read-only mode.
READ_ONLY_REASON = "read-only: it changes the backend's state"

Where = str | tuple[str, int] | Address


@dataclass(frozen=True)
class Result:
    """How one check went: ``outcome`` is passed, failed, aborts, error or skipped.

    ``failure`` holds the :class:`CheckFailed` of a failed check (a
    :class:`DiscosAborts` for ``aborts``); ``reason`` why it was skipped, or
    the error of a broken one.
    """

    check: Check
    outcome: str
    failure: CheckFailed | None = None
    reason: str = ""
    seconds: float = 0.0


def select_checks(only: Iterable[str] = (), skip: Iterable[str] = (),
                  read_only: bool = False) -> list[tuple[Check, str | None]]:
    """The checks to run, in order, each with the reason to skip it (or ``None``).

    ``only`` keeps just the checks named (all when empty); ``skip`` names
    checks to report as skipped; ``read_only`` skips the state-changing
    ones.  Raises ``ValueError`` naming any unknown check.
    """
    only_names: set[str] = set()
    skip_names: set[str] = set()
    unknown: list[str] = []
    for names, into in ((only, only_names), (skip, skip_names)):
        for name in names:
            try:
                into.add(check_named(name).name)
            except KeyError:
                unknown.append(name)
    if unknown:
        raise ValueError(f"unknown check {', '.join(repr(name) for name in unknown)}: "
                         f"the checks are {', '.join(CHECK_NAMES)}")
    selected: list[tuple[Check, str | None]] = []
    for check in CHECKS:
        if only_names and check.name not in only_names:
            continue
        reason = None
        if check.name in skip_names:
            reason = BY_NAME_REASON
        elif read_only and check.changes_state:
            reason = READ_ONLY_REASON
        selected.append((check, reason))
    return selected


def run_check(check: Check, where: Where, settings: Settings | None = None,
              reactor: Any = None) -> defer.Deferred[None]:
    """Connect, run ``check``, disconnect; fails with ``CheckFailed`` when the server is at fault.

    Fails with ``CannotConnect`` if the server cannot be reached, and with
    ``NotInServerVersion`` if the check needs a command the protocol version
    the server announced does not have (the check is then skipped).
    """
    return defer.Deferred.fromCoroutine(_run_check(check, where, settings, reactor))


async def _run_check(check: Check, where: Where, settings: Settings | None,
                     reactor: Any) -> None:
    session = await connect(where, settings=settings, reactor=reactor)
    session.allow_state_changes = check.changes_state
    try:
        await check.run(session)
    finally:
        await session.close()


def run_checks(where: Where, *, settings: Settings | None = None,
               checks: list[tuple[Check, str | None]] | None = None,
               progress: Callable[[Result], None] | None = None,
               reactor: Any = None) -> defer.Deferred[list[Result]]:
    """Run ``checks`` (from :func:`select_checks`; default all) one after the other.

    Fires with the list of :class:`Result`; ``progress`` is called with each
    as it comes.  A check that needs a command the server's protocol version
    does not have is skipped, and its reason says so.  Fails with
    ``CannotConnect`` if the server cannot be reached for the first check
    that runs; later, that is a failed check.
    """
    reactor = or_global(reactor)
    return defer.Deferred.fromCoroutine(_run_checks(
        where, settings, select_checks() if checks is None else checks, progress, reactor))


async def _run_checks(where: Where, settings: Settings | None,
                      checks: list[tuple[Check, str | None]],
                      progress: Callable[[Result], None] | None, reactor: Any) -> list[Result]:
    results: list[Result] = []
    reached = False
    for check, reason in checks:
        started = reactor.seconds()
        if reason is not None:
            result = Result(check, SKIPPED, reason=reason)
        else:
            try:
                await run_check(check, where, settings, reactor)
                result = Result(check, PASSED)
            except NotInServerVersion as error:
                result = Result(check, SKIPPED, reason=str(error))
            except CannotConnect as error:
                if not reached:
                    raise
                result = Result(check, FAILED, CheckFailed("(connecting)", str(error),
                                                           "a connection"))
            except DiscosAborts as error:
                result = Result(check, ABORTS, error)
            except CheckFailed as error:
                result = Result(check, FAILED, error)
            except Exception as error:  # pylint: disable=broad-exception-caught
                result = Result(check, ERROR, reason=f"{type(error).__name__}: {error}")
            reached = True
            result = replace(result, seconds=reactor.seconds() - started)
        results.append(result)
        if progress is not None:
            progress(result)
    return results
