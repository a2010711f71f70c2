"""``BackendTestCase``: the conformance checks as a test case to subclass.

::

    from discosbackend.testing import BackendTestCase
    from mybackend import MyBackend

    class MyBackendConforms(BackendTestCase):
        configuration = "XK77"          # a configuration MyBackend accepts

        def make_backend(self):
            return MyBackend()

Each check of :mod:`discosbackend.testing.checks` becomes a test method
``test_<check name>``; a test method of your own may also
:meth:`~BackendTestCase.replay` a recorded session against the backend.
With :meth:`BackendTestCase.make_backend` each test serves a fresh backend
on an ephemeral loopback port and stops it afterwards; with
:attr:`BackendTestCase.address` the tests talk to a server that is already
running (in any language).  The tests run under pytest (with or without
pytest-twisted), ``python -m twisted.trial`` and ``python -m unittest``.
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path
from typing import Any, Collection, TypeVar

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from discosbackend import server
from discosbackend.client.address import Address, parse_address
from discosbackend.configurations import Table, table_named
from discosbackend.handlers import DBProtocolHandler, Handler
from discosbackend.reactor import global_reactor
from discosbackend.testing.checks import CHECKS, Check, check_named
from discosbackend.testing.runner import READ_ONLY_REASON, run_check
from discosbackend.testing.replay import Report, replay_file
from discosbackend.testing.session import CheckFailed, NotInServerVersion, Settings

__all__ = ["BackendTestCase", "wait_for"]

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
# unittest leaves out of a failure's traceback the frames of modules that
# define this (pytest does too, for unittest-style cases): a check's failure
# is the backend's, and this module's frames would only hide what it sent
# and received.  Frames also carry __tracebackhide__, pytest's own marker.
__unittest = True
_NOTHING_TO_TEST = ("no backend to test: subclass BackendTestCase and override make_backend() "
                    "or set address")


def _in_reactor_greenlet() -> bool:
    """Whether this code runs in a greenlet other than the main one (pytest-twisted's)."""
    greenlets = sys.modules.get("greenlet")
    return greenlets is not None and greenlets.getcurrent().parent is not None


def wait_for(deferred: defer.Deferred[T]) -> T:
    """Block until ``deferred`` fires; return its result or raise its exception.

    Spins the reactor until then, as trial does; when pytest-twisted
    already runs the reactor (in its greenlet) it waits through
    ``pytest_twisted.blockon`` instead.  Raises ``RuntimeError`` when
    called from code the running reactor itself runs.
    """
    reactor = global_reactor()
    results: list[T | Failure] = []
    deferred.addBoth(results.append)
    if not results and reactor.running:
        plugin = sys.modules.get("pytest_twisted")
        if plugin is None or _in_reactor_greenlet():
            raise RuntimeError("cannot wait inside a running reactor (a pytest-twisted test "
                               "function, or a reactor running in this thread): run the "
                               "backend tests as test cases of their own")
        plugin.blockon(deferred)
    elif not results:
        deferred.addBoth(lambda _: reactor.crash())
        setattr(reactor, "stop", reactor.crash)  # like trial: Ctrl-C ends only this wait
        try:
            reactor.run()
        finally:
            delattr(reactor, "stop")
        if not results:
            raise KeyboardInterrupt()
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def _address(where: str | tuple[str, int]) -> Address:
    if isinstance(where, tuple):
        return Address(host=where[0], port=int(where[1]))
    return parse_address(where)


class BackendTestCase(SynchronousTestCase):
    """The conformance checks, one test each; subclass it to test your backend.

    Override :meth:`make_backend` (or set :attr:`address`) and declare, as
    class attributes, what your backend legitimately needs: a configuration
    it knows, its number of sections, a check it cannot pass.
    """

    #: pytest: collect subclasses, not this class (``__init_subclass__`` sets it again).
    __test__ = False
    #: A check's ``CheckFailed`` is an ``AssertionError``: report it as a failure.
    # trial infers type[FailTest] from its own default; unittest declares
    # type[BaseException], and any exception class is meant to work here.
    failureException = AssertionError  # type: ignore[assignment]

    #: ``("host", port)`` or ``"HOST:PORT"`` of a running server to test instead
    #: of serving :meth:`make_backend`.
    address: str | tuple[str, int] | None = None
    # The declarations below default to the checks' own defaults (Settings).
    #: A configuration id the backend accepts (``set-configuration``).
    configuration: str = Settings.configuration
    #: How many values ``get-tpi``/``get-tp0``/``get-rms`` answer; ``None``:
    #: at least one, the same for all three.
    sections: int | None = Settings.sections
    #: An integration time in ms the backend accepts.
    integration: int = Settings.integration
    #: Seconds the backend's clock may be from ours.
    time_tolerance: float = Settings.time_tolerance
    #: Seconds ahead at which time-tagged starts and stops are set.
    timed_delay: float = Settings.timed_delay
    #: Seconds after their time by which time-tagged starts and stops must show.
    timed_lateness: float = Settings.timed_lateness
    #: Seconds to wait for each reply.
    reply_timeout: float = Settings.timeout
    #: Seconds to wait for the greeting after connecting.
    greeting_timeout: float = Settings.greeting_timeout
    #: The backend's table of configurations, if it declares one: a table, a
    #: TOML file's path, or ``"srt"`` for SRT's.  Every configuration in it
    #: is then checked for its count of get-tpi/get-rms values.
    configurations: Table | str | None = None
    #: Skip the checks that change the backend's state (start, stop, set-...).
    read_only: bool = False
    #: Names of checks to skip, e.g. ``("convert_data_is_accepted",)``.
    skip_checks: Collection[str] = ()

    #: The backend :meth:`make_backend` returned, while a test runs.
    backend: Any = None
    #: Where the tests connect, while a test runs.
    where: Address | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True
        unknown = []
        for name in cls.skip_checks:
            try:
                check_named(name)
            except KeyError:
                unknown.append(name)
        if unknown:
            raise ValueError(f"{cls.__name__}.skip_checks names unknown checks: "
                             f"{', '.join(unknown)}")

    def make_backend(self) -> Any:
        """The backend to test: a backend object or a :class:`~discosbackend.handlers.Handler`.

        Called once per test; the result is served on a free loopback port.
        """
        raise NotImplementedError

    def check_settings(self) -> Settings:
        """The :class:`Settings` the checks run with, from the class attributes."""
        table = self.configurations
        return Settings(configuration=self.configuration, sections=self.sections,
                        integration=self.integration, time_tolerance=self.time_tolerance,
                        timed_delay=self.timed_delay, timed_lateness=self.timed_lateness,
                        timeout=self.reply_timeout,
                        greeting_timeout=self.greeting_timeout,
                        configurations=table_named(table) if isinstance(table, str) else table)

    def setUp(self) -> None:
        if self.address is not None:
            self.where = _address(self.address)
            return
        if type(self).make_backend is BackendTestCase.make_backend:
            raise unittest.SkipTest(_NOTHING_TO_TEST)
        self.backend = self.make_backend()
        handler = (self.backend if isinstance(self.backend, Handler)
                   else DBProtocolHandler(self.backend))
        port = wait_for(server.listen(0, handler, interface=LOOPBACK))
        self.addCleanup(lambda: wait_for(server.stop(port)))
        host = port.getHost()
        assert isinstance(host, IPv4Address)  # listening on LOOPBACK
        self.where = Address(host=LOOPBACK, port=host.port)

    def run_check(self, name: str) -> None:
        """Run the check called ``name`` against the backend (what each test does).

        A failed check fails the test with what was sent, what came back and
        what was expected, and no traceback of the library's own frames.
        """
        __tracebackhide__ = True  # pylint: disable=unused-variable
        check = check_named(name)
        if check.name in self.skip_checks or f"test_{check.name}" in self.skip_checks:
            raise unittest.SkipTest(f"{check.name} is in skip_checks")
        if self.read_only and check.changes_state:
            raise unittest.SkipTest(READ_ONLY_REASON)
        assert self.where is not None
        try:
            wait_for(run_check(check, self.where, self.check_settings()))
        except NotInServerVersion as error:
            raise unittest.SkipTest(str(error)) from None
        except CheckFailed as failed:
            reason = str(failed)
        else:
            return
        # Raised here, not in the except clause: the check's own traceback
        # (coroutines, Deferreds) is not chained to the failure.
        raise self.failureException(reason)

    def replay(self, path: str | Path, *, exact: bool = False, timing: bool = False) -> Report:
        """Replay the transcript at ``path`` against the backend and compare every reply.

        Fails the test with each difference (see
        :mod:`discosbackend.testing.replay`) unless every reply matches its
        recording; returns the :class:`~discosbackend.testing.replay.Report`.
        Call it from a test method of your own.
        """
        if self.where is None:  # setUp has not run: no backend served
            raise RuntimeError("replay() runs inside a test, once setUp has served the backend")
        report = wait_for(replay_file(path, self.where, exact=exact, timing=timing,
                                      settings=self.check_settings()))
        if not report.matches:
            raise self.failureException(f"replaying {path}:\n{report.text()}")
        return report


def _test_for(check: Check) -> Any:
    def test(self: BackendTestCase) -> None:
        __tracebackhide__ = True  # pylint: disable=unused-variable
        self.run_check(check.name)
    test.__name__ = f"test_{check.name}"
    test.__qualname__ = f"{BackendTestCase.__name__}.{test.__name__}"
    test.__doc__ = check.sentence
    return test


def _add_tests() -> None:
    for check in CHECKS:
        setattr(BackendTestCase, f"test_{check.name}", _test_for(check))


_add_tests()
