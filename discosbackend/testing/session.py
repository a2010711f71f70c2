"""What a conformance check talks through: a raw line connection to a server.

A :class:`Session` sends lines exactly as given and hands back each reply
line exactly as received, terminator included, so the checks can see a
missing CR or an extra reply.  Every wait is bounded: the greeting by
:attr:`Settings.greeting_timeout`, each reply by :attr:`Settings.timeout`;
a silent server fails the check instead of hanging it.

    session = await connect("127.0.0.1", 8978)
    print(session.greeting)                  # b'!version,ok,1.4\\r\\n'
    print(await session.exchange(b"?status"))
    await session.close()
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence, cast

import socket

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from discosbackend.client.address import Address, parse_address
from discosbackend.client.errors import cannot_connect
from discosbackend.client.protocol import client_endpoint
from discosbackend.commands import COMMANDS
from discosbackend.configurations import Table
from discosbackend.conformance import LineBuffer, parse_raw, show, show_lines, version_of
from discosbackend.grammar import (ENCODING, ENCODING_ERRORS, GrammarException, Message,
                                   parse_message, request, serialize_line)
from discosbackend.reactor import or_global

__all__ = ["Settings", "Session", "Answer", "CheckFailed", "DiscosAborts", "CannotConnect",
           "StateChangeRefused", "NotInServerVersion", "connect", "show", "show_lines",
           "DEFAULT_TIMEOUT", "DEFAULT_GREETING_TIMEOUT", "EMPTY_LINE_REASON", "DISCOS_ABORTS"]

#: Seconds to wait for each reply, by default.
DEFAULT_TIMEOUT = 5.0
#: Seconds to wait for the greeting after connecting, by default.
DEFAULT_GREETING_TIMEOUT = 1.0
#: What marks a failure the real DISCOS client does not survive.
DISCOS_ABORTS = "DISCOS aborts on this"
#: Why a reply must never be an empty line.
EMPTY_LINE_REASON = "the real DISCOS client takes an empty line for a lost connection"


@dataclass(frozen=True)
class Settings:
    """What the checks may assume about a backend, and how long to wait.

    ``configuration`` is a configuration id the backend accepts;
    ``sections`` the number of values ``get-tpi``/``get-tp0``/``get-rms``
    answer (``None``: at least one, the same for all three);
    ``integration`` an integration time (ms) it accepts; ``time_tolerance``
    how far (seconds) its clock may be from ours; ``timed_delay`` how far
    ahead (seconds) time-tagged starts and stops are set, and
    ``timed_lateness`` how long after their time (seconds) they may take
    to show in ``status``.  ``configurations`` is the backend's table of
    configurations, when it declares one: every configuration in it is
    then checked for its count of ``get-tpi``/``get-rms`` values (without
    it, ``configuration`` is, against SRT's table when it is an SRT one).
    """

    configuration: str = "SK00"
    sections: int | None = None
    integration: int = 40
    time_tolerance: float = 30.0
    timed_delay: float = 0.3
    timed_lateness: float = 2.0
    timeout: float = DEFAULT_TIMEOUT
    greeting_timeout: float = DEFAULT_GREETING_TIMEOUT
    configurations: Table | None = field(default=None, hash=False)  # a mapping: unhashable


class CheckFailed(AssertionError):
    """A check found the server misbehaving: what was sent, what came back, what was due.

    ``why`` says, when it matters, what the real DISCOS client does with
    such a reply.
    """

    def __init__(self, sent: str, received: str, expected: str, why: str = "") -> None:
        text = f"sent:     {sent}\nreceived: {received}\nexpected: {expected}"
        super().__init__(text + (f"\nwhy:      {why}" if why else ""))
        self.sent = sent
        self.received = received
        self.expected = expected
        self.why = why


class DiscosAborts(CheckFailed):
    """A failure the real DISCOS client does not survive: its component ends on this reply.

    ``why`` starts with :data:`DISCOS_ABORTS`.
    """

    def __init__(self, sent: str, received: str, expected: str, why: str) -> None:
        super().__init__(sent, received, expected, f"{DISCOS_ABORTS}: {why}")


class CannotConnect(Exception):
    """The server could not be reached at all."""


class StateChangeRefused(RuntimeError):
    """A check declared read-only tried to send a state-changing command (a bug in the check)."""


class NotInServerVersion(Exception):
    """A check needs a command the protocol version the server announced does not have.

    Not the server's fault: the check is skipped, and the message says why.
    """


def _terminated(line: bytes | str) -> bytes:
    data = line.encode(ENCODING, ENCODING_ERRORS) if isinstance(line, str) else bytes(line)
    return data if data.endswith(b"\n") else data + b"\r\n"


@dataclass(frozen=True)
class Answer:
    """One request and its parsed reply: ``message`` plus the raw bytes both ways."""

    sent: bytes
    raw: bytes
    message: Message

    @property
    def code(self) -> str | None:
        """The reply's return code: ``ok``, ``fail`` or ``invalid``."""
        return self.message.code

    @property
    def arguments(self) -> list[str]:
        """The reply's values (after the code)."""
        return self.message.arguments

    def mismatch(self, expected: str) -> CheckFailed:
        """A :class:`CheckFailed` for this exchange, with what was ``expected``."""
        return CheckFailed(show(self.sent), show(self.raw), expected)


class _LineProtocol(Protocol):
    """Splits what the server sends into lines, each kept with its terminator."""

    def __init__(self) -> None:
        self._buffer = LineBuffer()
        self._lines: deque[bytes] = deque()
        self._waiters: deque[defer.Deferred[bytes]] = deque()
        self._closed_waiters: list[defer.Deferred[None]] = []
        self.lost: str | None = None

    def dataReceived(self, data: bytes) -> None:
        for line in self._buffer.feed(data):
            self._deliver(line)

    def connectionLost(self, reason: Failure | None = None) -> None:
        rest = self._buffer.rest()
        if rest:  # an unterminated last line: show it for what it is
            self._deliver(rest)
        self.lost = reason.getErrorMessage() if reason is not None else "closed"
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.errback(ConnectionError(self.lost))
        closed, self._closed_waiters = self._closed_waiters, []
        for closed_waiter in closed:
            closed_waiter.callback(None)

    def _deliver(self, line: bytes) -> None:
        if self._waiters:
            self._waiters.popleft().callback(line)
        else:
            self._lines.append(line)

    def next_line(self) -> defer.Deferred[bytes]:
        """The next line from the server; fails with ``ConnectionError`` once closed."""
        if self._lines:
            return defer.succeed(self._lines.popleft())
        if self.lost is not None:
            return defer.fail(ConnectionError(self.lost))
        waiter: defer.Deferred[bytes] = defer.Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    def close(self) -> defer.Deferred[None]:
        """Close the connection; fires once it is closed."""
        if self.lost is not None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._closed_waiters.append(waiter)
        assert self.transport is not None  # only connected protocols reach a Session
        self.transport.loseConnection()
        return waiter


class Session:
    """A connection to the server under test, as the checks use it.

    ``greeting`` is the raw first line the server sent (terminator
    included), or ``None`` if none came within the greeting timeout.
    While ``allow_state_changes`` is false, sending a request for a command
    that changes the backend's state raises :class:`StateChangeRefused`.
    While ``within_server_version`` is true, sending a request for a standard
    command the :attr:`server_version` does not have raises
    :class:`NotInServerVersion`.
    """

    def __init__(self, protocol: _LineProtocol, settings: Settings, reactor: Any,
                 where: str) -> None:
        self._protocol = protocol
        self.settings = settings
        self.reactor = reactor
        self.where = where
        self.greeting: bytes | None = None
        self.allow_state_changes = True
        self.within_server_version = True

    @property
    def server_version(self) -> str | None:
        """The protocol version the greeting announced (``None``: no proper greeting)."""
        return version_of(self.greeting)

    def receive(self, sent: bytes, timeout: float | None = None) -> defer.Deferred[bytes]:
        """The next line from the server, terminator included, within ``timeout`` seconds.

        ``sent`` is the line it answers, for the report: no line within the
        timeout (default :attr:`Settings.timeout`), or a closed connection,
        fails with :class:`CheckFailed`.
        """
        if timeout is None:
            timeout = self.settings.timeout
        line = self._protocol.next_line()

        def converted(failure: Failure) -> Failure:
            if failure.check(defer.CancelledError, defer.TimeoutError):
                received = f"nothing within {timeout:g} s"
            else:
                received = f"the connection closed ({failure.getErrorMessage()})"
            return Failure(CheckFailed(show(sent), received, "one reply line"))
        line.addTimeout(timeout, self.reactor)
        return line.addErrback(converted)

    def _guard(self, data: bytes) -> None:
        message = parse_raw(data)
        if message is None or not message.is_request():
            return
        command = COMMANDS.get(message.name)
        if command is None:
            return
        if not self.allow_state_changes and command.changes_state:
            raise StateChangeRefused(
                f"{message.name} changes the backend's state but the check is read-only")
        version = self.server_version
        if self.within_server_version and not command.served_in(version):
            raise NotInServerVersion(f"the server speaks protocol {version}, which has no "
                                     f"{command.name} (from {command.since})")

    def send(self, lines: Sequence[bytes | str]) -> list[bytes]:
        """Write raw lines in one write (CR LF added to those not ending in LF); returns them.

        Nothing is written once the connection is lost (:meth:`receive` then
        says so).
        """
        data = [_terminated(line) for line in lines]
        for line in data:
            self._guard(line)
        self.write(b"".join(data))
        return data

    def write(self, data: bytes) -> None:
        """Write ``data`` exactly as given: no line end added, no request refused.

        Nothing is written once the connection is lost.
        """
        if self._protocol.lost is None:
            assert self._protocol.transport is not None  # connected, not yet lost
            self._protocol.transport.write(data)

    def exchange(self, line: bytes | str) -> defer.Deferred[bytes]:
        """Send one raw line (CR LF added unless it ends in LF); fires with the raw reply line.

        The reply keeps its terminator.  No reply within the timeout, or a
        closed connection, fails with :class:`CheckFailed`.
        """
        return self.exchange_all([line]).addCallback(lambda replies: replies[0])

    def exchange_all(self, lines: Sequence[bytes | str]) -> defer.Deferred[list[bytes]]:
        """Send several raw lines in one write; fires with one raw reply line per line."""
        return defer.Deferred.fromCoroutine(self._exchange_all(lines))

    async def _exchange_all(self, lines: Sequence[bytes | str]) -> list[bytes]:
        replies: list[bytes] = []
        for line in self.send(lines):
            replies.append(await self.receive(line))
        return replies

    def request(self, name: str, *arguments: str) -> defer.Deferred[Answer]:
        """Send ``?name,arguments...``; fires with the :class:`Answer`, whatever its code.

        A reply that does not parse, is not a reply, or names another
        command fails with :class:`CheckFailed`.
        """
        return defer.Deferred.fromCoroutine(self._request(name, arguments))

    async def _request(self, name: str, arguments: Sequence[str]) -> Answer:
        sent = serialize_line(request(name, *arguments))
        raw = await self.exchange(sent)
        expected = f"a reply !{name},<code>..."
        if raw.rstrip(b"\r\n") == b"" and raw.endswith(b"\n"):
            raise CheckFailed(show(sent), show(raw), expected, EMPTY_LINE_REASON)
        try:
            message = parse_message(raw.decode(ENCODING, ENCODING_ERRORS))
        except GrammarException as error:
            raise CheckFailed(show(sent), show(raw),
                              f"{expected} (it does not parse: {error.reason})") from None
        if not message.is_reply() or message.name != name:
            raise CheckFailed(show(sent), show(raw), expected)
        return Answer(sent, raw, message)

    def close(self) -> defer.Deferred[None]:
        """Close the connection; fires once it is closed."""
        return self._protocol.close()


def _where(host: str | tuple[str, int] | Address, port: int | None) -> Address:
    if isinstance(host, Address):
        return host
    if isinstance(host, tuple):
        host, port = host
    if port is not None:
        return Address(host=host, port=int(port))
    return parse_address(host)


def connect(host: str | tuple[str, int] | Address, port: int | None = None, *,
            settings: Settings | None = None, reactor: Any = None) -> defer.Deferred[Session]:
    """Connect to the server and read its greeting; fires with a :class:`Session`.

    ``host`` is a host name with ``port``, or alone a ``HOST:PORT`` (or
    endpoint) string, a ``(host, port)`` tuple or an ``Address``.  Fails
    with :class:`CannotConnect` if the server cannot be reached; a missing
    greeting is not an error (``session.greeting`` is then ``None``).
    """
    reactor = or_global(reactor)
    settings = settings if settings is not None else Settings()
    return defer.Deferred.fromCoroutine(
        _connect(_where(host, port), settings, reactor))


def _endpoint(address: Address, reactor: Any, timeout: float) -> IStreamClientEndpoint:
    """A client endpoint that needs no thread: host names are resolved here, at once.

    (Twisted resolves names in the reactor's thread pool, whose threads
    would keep the process alive when tests spin the reactor themselves.)
    """
    host, port = address.host, address.port
    if address.description is not None or host is None or port is None:
        return client_endpoint(address, reactor, timeout)
    if not (isIPAddress(host) or isIPv6Address(host)):
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise CannotConnect(cannot_connect(address, error)) from None
        host = str(found[0][4][0])
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)


async def _connect(address: Address, settings: Settings, reactor: Any) -> Session:
    endpoint = _endpoint(address, reactor, settings.timeout)
    # The endpoint fires with what the factory built: a _LineProtocol.
    connecting = cast("defer.Deferred[_LineProtocol]",
                      endpoint.connect(Factory.forProtocol(_LineProtocol)))

    def cannot(failure: Failure) -> Failure:
        assert failure.value is not None  # a Failure always holds an exception
        return Failure(CannotConnect(cannot_connect(address, failure.value, settings.timeout)))
    protocol: _LineProtocol = await connecting.addErrback(cannot)
    session = Session(protocol, settings, reactor, str(address))
    greeting = protocol.next_line()
    greeting.addTimeout(settings.greeting_timeout, reactor)
    try:
        session.greeting = await greeting
    except (defer.TimeoutError, defer.CancelledError, ConnectionError):
        session.greeting = None
    return session
