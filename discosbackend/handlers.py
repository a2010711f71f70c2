"""Handlers: what the server does with each parsed request.

A :class:`Handler` answers a request :class:`~discosbackend.grammar.Message`,
or straight from its arguments through one of its :attr:`~Handler.routes`.
:class:`DBProtocolHandler` is the real one: when it is made, it prepares one
answer per command of :mod:`discosbackend.commands` — check the arguments,
call the backend's method, write its result as the reply's wire bytes —
and publishes them as its routes.  The other handlers are for debugging
and tests.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Union

from twisted.internet.defer import Deferred, ensureDeferred

from discosbackend import __protocol_version__
from discosbackend.backend import runs_in_worker
from discosbackend.commands import HELP, VERSION, Command, commands_of
from discosbackend.errors import (ArgumentError, HandlerException, InvalidRequest,
                                  NotSupportedError, OpenError)
from discosbackend.grammar import Message, fail, ok, request
from discosbackend.worker import DEFAULT_SHUTDOWN_WAIT, Worker

__all__ = ["Handler", "HandlerException", "DBProtocolHandler", "AlwaysOkHandler",
           "AlwaysFailHandler", "AlwaysRaiseHandler", "Reply", "Route", "RawReply",
           "CloseAfter"]

#: What :meth:`Handler.handle` returns: a reply message, the reply's wire
#: bytes (CR LF included), a Deferred firing with either, or (for fault
#: injection) a :class:`CloseAfter`.
Reply = Union[Message, bytes, "CloseAfter", Deferred]
#: A route: a request's (unescaped) arguments in, its reply out, as
#: :meth:`Handler.handle` gives it (:class:`DBProtocolHandler`'s give the
#: wire bytes, now or later).
Route = Callable[[list[str]], Reply]


class RawReply(bytes):
    """Bytes a handler wants written exactly as they are, for fault injection.

    A handler may answer with a ``RawReply`` instead of a message: it is
    written verbatim (grammatical or not), and with ``close_after`` the
    connection is closed once it is written.  Real backends never need it.
    """

    close_after: bool

    def __new__(cls, data: bytes, close_after: bool = False) -> RawReply:
        raw = super().__new__(cls, data)
        raw.close_after = close_after
        return raw


@dataclass(frozen=True)
class CloseAfter:
    """A handler's answer meaning: reply with ``reply``, then close the connection.

    ``reply`` is anything :meth:`Handler.handle` may return, a failing
    Deferred included: its error is mapped to a reply as usual.  For fault
    injection; real backends never need it.
    """

    reply: Reply


class Handler:
    """Base class of request handlers.

    The server answers a request through its name's route in :attr:`routes`
    when there is one, else through :meth:`handle`.
    """

    #: Request name -> the function answering that request from its
    #: (unescaped) arguments, as :meth:`handle` would.  Built once, when the
    #: handler is made; the base class has none.
    routes: Mapping[str, Route] = MappingProxyType({})

    def handle(self, message: Message) -> Reply:
        """Answer ``message``, a well-formed request.

        Return the reply message, its wire bytes, or a Deferred firing with
        either.  Raising :class:`HandlerException` gives a ``fail`` reply with
        its message (``invalid`` for :class:`~discosbackend.errors.InvalidRequest`);
        the server turns any other exception into a ``fail`` reply too.
        """
        raise NotImplementedError

    def start(self) -> None:
        """Called when the server starts listening."""

    def stop(self) -> None:
        """Called when the server stops listening."""


class AlwaysOkHandler(Handler):
    """Answers ``ok`` to everything, echoing the request's arguments.

    ``version`` (the greeting too) is answered with the protocol version, as
    every server does.
    """

    def handle(self, message: Message) -> Message:
        if message.name == VERSION and not message.arguments:
            return ok(VERSION, __protocol_version__)
        return ok(message.name, *message.arguments)


class AlwaysFailHandler(Handler):
    """Answers ``fail`` to everything."""

    def handle(self, message: Message) -> Message:
        return fail(message.name, "always fails")


class AlwaysRaiseHandler(Handler):
    """Raises on everything (the server answers ``fail``)."""

    def handle(self, message: Message) -> Message:
        raise RuntimeError("always raises")


class DBProtocolHandler(Handler):
    """Validates each request and calls the matching method of ``backend``.

    ``backend`` is any object with methods named after the commands
    (``status()``, ``get_tpi()``, ``set_section(...)``, ...), such as a
    :class:`discosbackend.backend.Backend` subclass or a backend written for
    discos-backend 1.4.  Methods may return a value, a Deferred, or be
    ``async def``.  A command the backend lacks is answered ``fail``
    (``not supported``); ``version`` is answered by the library.

    ``protocol`` is the protocol version it speaks (one of
    :data:`~discosbackend.commands.PROTOCOL_VERSIONS`): the greeting and
    ``?version`` say it, and commands of later versions are unknown
    (``invalid``).  ``client_commands`` serves ``get-rms``, which the real
    client sends though no published version lists it.

    With ``threaded`` the backend's methods run in a worker thread, one at
    a time in arrival order (see :mod:`discosbackend.worker`); without it,
    only those marked with :func:`~discosbackend.backend.blocking` do.
    Arguments are checked, and ``version`` answered, on the reactor all the
    same.  When the server stops, ``stop()`` waits up to ``shutdown_wait``
    seconds for a running call.  ``reactor`` is where the worker delivers
    results (the global reactor by default).

    Everything a request needs is prepared here, once: each command gets
    an *answer* (check the arguments, call the backend's method, format its
    result as the reply's wire bytes), the backend's methods are looked up
    and their signatures read.  Replace a backend method before making the
    handler, not after.
    """

    def __init__(self, backend: Any, *, protocol: str = __protocol_version__,
                 client_commands: bool = True, threaded: bool = False,
                 shutdown_wait: float | None = DEFAULT_SHUTDOWN_WAIT,
                 reactor: Any = None) -> None:
        self.backend = backend
        self.protocol = protocol
        self.threaded = threaded
        self.shutdown_wait = shutdown_wait
        #: The thread running the backend's blocking methods; ``None`` if none does.
        self.worker: Worker | None = None
        self._reactor = reactor
        if threaded:
            self._get_worker()
        self.commands: dict[str, Command] = commands_of(backend, protocol, client_commands)
        self._answers = {name: self._answer(command) for name, command in self.commands.items()}
        if type(self).handle is DBProtocolHandler.handle:
            self.routes = MappingProxyType(self._answers)
        else:
            # A subclass that overrides handle() (1.4 code does; so does the
            # simulator) must see every request: its routes lead there.
            self.routes = MappingProxyType(
                {name: partial(self._handle_request, name) for name in self._answers})

    def start(self) -> None:
        """Start the worker, if any, and call the backend's ``open()`` (in the worker, if any).

        Raises :class:`~discosbackend.errors.OpenError` if ``open()`` fails.
        """
        if self.worker is not None:
            self.worker.start()
        opener = getattr(self.backend, "open", None)
        if not callable(opener):
            return
        try:
            if self.worker is None:
                opener()
            else:
                self.worker.call_and_wait("open()", opener)
        except Exception as error:  # pylint: disable=broad-except
            if self.worker is not None:
                self.worker.stop(self.shutdown_wait)
            raise OpenError(f"{type(self.backend).__name__}.open() failed: "
                            f"{type(error).__name__}: {error}") from error

    def stop(self) -> None:
        """Call the backend's ``close()`` and stop the worker, if any.

        With a worker, ``close()`` runs there after the running call, and this
        waits at most ``shutdown_wait`` seconds for both; calls not started
        yet are dropped.
        """
        closer = getattr(self.backend, "close", None)
        closer = closer if callable(closer) else None
        if self.worker is not None:
            self.worker.stop(self.shutdown_wait, closer)
        elif closer is not None:
            closer()

    def handle(self, message: Message) -> Reply:
        """The reply's wire bytes, or a Deferred of them; an unknown command is ``invalid``."""
        answer = self._answers.get(message.name)
        if answer is None:
            raise InvalidRequest(f"unknown command {message.name!r}")
        return answer(message.arguments)

    def _get_worker(self) -> Worker:
        if self.worker is None:
            self.worker = Worker(type(self.backend).__name__, self._reactor)
        return self.worker

    def _in_worker(self, name: str, method: Callable[..., Any]) -> Callable[..., Deferred[Any]]:
        """``method`` called through the worker: its result comes as a Deferred."""
        return partial(self._get_worker().call, f"{name}()", _in_thread(method))

    def _handle_request(self, name: str, arguments: list[str]) -> Reply:
        """A route that leads through :meth:`handle`."""
        return self.handle(request(name, *arguments))

    def _answer(self, command: Command) -> Callable[[list[str]], bytes | Deferred[bytes]]:
        """The answer to ``command``: its request's arguments in, reply bytes out."""
        if command.method is None and command.name == HELP:
            return self._answer_help(command)
        if command.method is None:  # version: the library's own answer
            version = command.reply_line(self.protocol)

            def answer_version(arguments: list[str]) -> bytes:
                command.parse_arguments(arguments)
                return version
            return answer_version
        method = getattr(self.backend, command.method, None)
        if method is None:
            def not_supported(arguments: list[str]) -> bytes:
                command.parse_arguments(arguments)
                raise NotSupportedError(f"not supported: {command.name}")
            return not_supported
        # A backend written for 1.4 may take fewer optional values than the
        # command has (get_tpi(self)): pass it only as many as it takes.
        limit = _positional_limit(method)
        if limit is not None and limit < len(command.arguments):
            limit = max(limit, command.required)
        else:
            limit = None  # it takes them all
        takes_arguments = bool(command.arguments)
        if runs_in_worker(method, self.threaded):
            # Its result becomes a Deferred, answered below as any other.
            method = self._in_worker(command.method, method)

        def answer(arguments: list[str]) -> bytes | Deferred[bytes]:
            values = command.parse_arguments(arguments) if arguments or takes_arguments else []
            if limit is not None:
                values = values[:limit]
            result = method(*values)
            if hasattr(result, "__await__"):  # a Deferred or a coroutine: answer later
                return ensureDeferred(result).addCallback(command.reply_line)
            return command.reply_line(result)
        return answer

    def _answer_help(self, command: Command) -> Callable[[list[str]], bytes]:
        """``?help``: the names answered; ``?help,NAME``: that command's usage and summary."""
        def answer_help(arguments: list[str]) -> bytes:
            values = command.parse_arguments(arguments)
            if not values:
                return command.reply_line(list(self._answers))
            described = self.commands.get(values[0])
            if described is None or values[0] not in self._answers:
                raise ArgumentError(f"unknown command {values[0]!r}")
            return command.reply_line([described.usage(),
                                       described.summary or "no description"])
        return answer_help


def _in_thread(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` as the worker calls it: an iterator it returns is read there."""
    def call(*values: Any) -> Any:
        result = method(*values)
        # A generator runs backend code as it is read: not on the reactor.
        return tuple(result) if isinstance(result, Iterator) else result
    return call


def _positional_limit(method: Callable[..., Any]) -> int | None:
    """How many positional arguments ``method`` takes; ``None`` if unlimited."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return None
    limit = 0
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            limit += 1
    return limit
