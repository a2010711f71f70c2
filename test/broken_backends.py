"""Backends and servers that break the protocol on purpose, one way each.

The conformance suite is tested with them: each must fail exactly the
checks about what it breaks.

- :class:`TwoValueStatus`: ``status()`` returns two values, not three.
- :class:`FailUnknownHandler`: answers an unknown command ``fail``, not ``invalid``.
- :class:`EagerStart`, :class:`DeafStart`: get time-tagged starts wrong.
- :class:`Scripted`: answers chosen commands with chosen raw lines.
- :class:`LongStatusWord`: a ``status`` reply of over 600 bytes.
- :class:`BusySetEnable`: ``set-enable`` answered ``fail`` while acquiring.
- :class:`SectionsOnly`: as many values as ``sections``, whatever the configuration.
- :func:`lf_only_factory`: a server whose lines end in a bare LF.
- :func:`no_greeting_factory`: a server that does not greet.
- :func:`blank_line_factory`: a server sending an empty line after each reply.
- :class:`RewritingFactory`: any other rewriting of what a server sends.

The factories make raw Twisted servers: serve them with :func:`listen_raw`
and stop them with :func:`stop_raw`.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from discosbackend.errors import BackendError, InvalidRequest
from discosbackend.grammar import Message
from discosbackend.handlers import DBProtocolHandler, Handler, Reply
from discosbackend.protocol import DBProtocolFactory
from discosbackend.responder import RawReply
from discosbackend.simulator import BackendSimulator


class TwoValueStatus(BackendSimulator):
    """A simulator whose status forgets the acquiring flag."""

    def status(self) -> tuple[Any, str]:  # type: ignore[override]
        return self.time(), "ok"


class FailUnknownHandler(DBProtocolHandler):
    """Answers unknown commands ``fail`` instead of ``invalid``."""

    def handle(self, message: Message) -> Reply:
        try:
            return super().handle(message)
        except InvalidRequest as error:
            raise BackendError(str(error)) from None


class Scripted(DBProtocolHandler):
    """A simulator whose replies to some commands are the given raw lines.

    ``Scripted(get_tpi=b"!get-tpi,ok,nan\\r\\n")``: a keyword names a command
    (``_`` for ``-``); its value is the reply bytes, or a function making them.
    """

    def __init__(self, backend: Any = None, **replies: bytes | Callable[[], bytes]) -> None:
        super().__init__(backend if backend is not None else BackendSimulator())
        self.replies = {name.replace("_", "-"): reply for name, reply in replies.items()}

    def handle(self, message: Message) -> Reply:
        scripted = self.replies.get(message.name)
        if scripted is None:
            return super().handle(message)
        return RawReply(scripted() if callable(scripted) else scripted)


class LongStatusWord(BackendSimulator):
    """A simulator whose status word is 600 characters long (the reply overflows DISCOS)."""

    def status(self) -> tuple[Any, str, bool]:
        return self.time(), "degraded-" + "x" * 591, self.acquiring


class BusySetEnable(BackendSimulator):
    """Refuses ``set-enable`` while acquiring, as the simulator once did other settings."""

    def set_enable(self, feed1: int, feed2: int) -> None:
        if self.acquiring:
            raise BackendError("busy acquiring")
        super().set_enable(feed1, feed2)


class SectionsOnly(BackendSimulator):
    """Gives its ``sections`` values whatever the configuration and the enabled feeds."""

    def _first(self, values: list[float]) -> list[float]:
        return values[:len(self.default_sections())]

    def get_tpi(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        return self._first(super().get_tpi(frequency, bandwidth))

    def get_tp0(self, frequency: float | None = None,
                bandwidth: float | None = None) -> list[float]:
        return self._first(super().get_tp0(frequency, bandwidth))

    def get_rms(self) -> list[float]:
        return self._first(super().get_rms())


class EagerStart(BackendSimulator):
    """Starts at once, even when told a time."""

    def start(self, timestamp: Any = None) -> None:
        super().start()


class DeafStart(BackendSimulator):
    """Says ok to start and does nothing."""

    def start(self, timestamp: Any = None) -> None:
        return None


def _same(data: bytes) -> bytes:
    return data


class RewritingFactory(WrappingFactory):
    """A server (simulator by default) whose output is rewritten on the wire.

    ``greeting`` rewrites the first write of each connection, ``rewrite``
    every other one (and the first too, without ``greeting``).
    """

    def __init__(self, rewrite: Callable[[bytes], bytes] = _same,
                 greeting: Callable[[bytes], bytes] | None = None,
                 handler: Handler | None = None) -> None:
        super().__init__(DBProtocolFactory(handler or DBProtocolHandler(BackendSimulator())))
        self.rewrite = rewrite
        self.greeting = greeting or rewrite
        self.protocol = _Rewriting


class _Rewriting(ProtocolWrapper):
    factory: RewritingFactory
    greeted = False

    def write(self, data: bytes) -> None:
        if self.greeted:
            data = self.factory.rewrite(data)
        else:
            self.greeted = True
            data = self.factory.greeting(data)
        if data:
            super().write(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))


def lf_only_factory() -> RewritingFactory:
    """A simulator server whose replies end in LF only."""
    return RewritingFactory(lambda data: data.replace(b"\r\n", b"\n"))


def no_greeting_factory() -> RewritingFactory:
    """A simulator server that sends no greeting."""
    return RewritingFactory(greeting=lambda data: b"")


def blank_line_factory() -> RewritingFactory:
    """A simulator server that follows every reply line with an empty line."""
    return RewritingFactory(lambda data: data.replace(b"\r\n", b"\r\n\r\n"), greeting=_same)


def doubling_factory(prefix: bytes) -> RewritingFactory:
    """A simulator server that sends twice each reply line starting with ``prefix``."""
    pattern = re.compile(re.escape(prefix) + b"[^\n]*\n")
    return RewritingFactory(lambda data: pattern.sub(lambda found: found.group() * 2, data))


def listen_raw(factory: WrappingFactory) -> IListeningPort:
    """Serve ``factory`` on a free loopback port, at once (no reactor turn needed)."""
    from twisted.internet import reactor
    return reactor.listenTCP(0, factory, interface="127.0.0.1")


def stop_raw(port: IListeningPort) -> defer.Deferred:
    """Close the connections of a :func:`listen_raw` server and stop listening."""
    inner: DBProtocolFactory = port.factory.wrappedFactory  # type: ignore[attr-defined]
    closing = inner.close_connections()
    closing.addCallback(lambda _: port.stopListening())
    return closing
