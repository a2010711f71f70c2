"""Handlers: what the server does with each parsed request.

A :class:`Handler` turns a request :class:`~discosbackend.grammar.Message`
into a reply message, or a Deferred that fires with one.
:class:`DBProtocolHandler` is the real one: it checks each command's
arguments against its declaration in :mod:`discosbackend.commands` and
calls the matching method of a backend object.  The other handlers are for
debugging and tests.
"""

from __future__ import annotations

import inspect
from functools import partial
from types import CoroutineType
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from discosbackend import __protocol_version__
from discosbackend.commands import Command, commands_of
from discosbackend.errors import (ArgumentError, HandlerException, InvalidRequest,
                                  NotSupportedError)
from discosbackend.grammar import Message, fail, ok, request

__all__ = ["Handler", "HandlerException", "DBProtocolHandler", "AlwaysOkHandler",
           "AlwaysFailHandler", "AlwaysRaiseHandler", "Reply", "Route"]

#: What :meth:`Handler.handle` returns.
Reply = Message | Deferred
#: What :meth:`Handler.route` returns: a request's arguments in, its reply out.
Route = Callable[[list[str]], Reply | bytes]

_log = Logger()
#: Result types that are surely not Deferreds or coroutines (a quick check).
_PLAIN_RESULTS = frozenset((tuple, list, type(None), str, int, float, bool))


class Handler:
    """Base class of request handlers."""

    def handle(self, message: Message) -> Reply:
        """Answer ``message``, a well-formed request.

        Return the reply message or a Deferred firing with it.  Raising
        :class:`HandlerException` gives a ``fail`` reply with its message;
        the server turns any other exception into a ``fail`` reply too.
        """
        raise NotImplementedError

    def route(self, name: str) -> Route:
        """A function answering requests named ``name``, given their arguments.

        The server asks once per name and calls the function for each
        request, with the request's unescaped arguments.  It may return
        what :meth:`handle` does, or the reply's wire bytes (CR LF
        included), which are sent as they are.  This one builds the request
        message and calls :meth:`handle`; a handler overrides it to answer
        faster.
        """
        def answer(arguments: list[str]) -> Reply:
            return self.handle(request(name, *arguments))
        return answer

    def start(self) -> None:
        """Called when the server starts listening."""

    def stop(self) -> None:
        """Called when the server stops listening."""


class AlwaysOkHandler(Handler):
    """Answers ``ok`` to everything, echoing the request's arguments."""

    def handle(self, message: Message) -> Message:
        return ok(message.name, *message.arguments)


class AlwaysFailHandler(Handler):
    """Answers ``fail`` to everything."""

    def handle(self, message: Message) -> Message:
        return fail(message.name, "always fails")


class AlwaysRaiseHandler(Handler):
    """Raises on everything (the server answers ``fail``)."""

    def handle(self, message: Message) -> Message:
        raise RuntimeError("always raises")


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


class DBProtocolHandler(Handler):
    """Validates each request and calls the matching method of ``backend``.

    ``backend`` is any object with methods named after the commands
    (``status()``, ``get_tpi()``, ``set_section(...)``, ...), such as a
    :class:`discosbackend.backend.Backend` subclass or a backend written for
    discos-backend 1.4.  Methods may return a value, a Deferred, or be
    ``async def``.  A command the backend lacks is answered ``fail``
    (``not supported``); ``version`` is answered by the library.
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.commands: dict[str, Command] = commands_of(backend)
        self._keep: dict[str, int | None] = {}  # how many values each method takes

    def start(self) -> None:
        starter = getattr(self.backend, "open", None)
        if callable(starter):
            starter()

    def stop(self) -> None:
        closer = getattr(self.backend, "close", None)
        if callable(closer):
            closer()

    def handle(self, message: Message) -> Reply:
        command = self.commands.get(message.name)
        if command is None:
            raise InvalidRequest(f"unknown command {message.name!r}")
        return self._invoke(command, partial(_reply_message, command), message.arguments)

    def route(self, name: str) -> Route:
        """Answer ``name`` requests straight to wire bytes, skipping the messages.

        A subclass that overrides :meth:`handle` is routed through it.
        """
        command = self.commands.get(name)
        if command is None or type(self).handle is not DBProtocolHandler.handle:
            return super().route(name)
        return partial(self._invoke, command, command.reply_line)

    def _invoke(self, command: Command, finish: Callable[[Any], Any],
                arguments: list[str]) -> Any:
        """Check ``arguments``, call the backend and ``finish`` its result (or later)."""
        values = command.parse_arguments(arguments) if arguments or command.arguments else ()
        if command.method is None:
            return finish(__protocol_version__)
        method = getattr(self.backend, command.method, None)
        if method is None:
            raise NotSupportedError(f"not supported: {command.name}")
        if values:
            keep = self._keep.get(command.name, -1)
            if keep == -1:
                keep = self._keep[command.name] = _positional_limit(method)
            if keep is not None and len(values) > keep:
                # An older backend (get_tpi(self)) takes fewer optional values.
                values = values[:max(keep, command.required)]
        result = method(*values) if values else method()
        if result.__class__ not in _PLAIN_RESULTS:
            if isinstance(result, Deferred):
                return result.addCallback(_finish, command, finish)
            if result.__class__ is CoroutineType:
                return Deferred.fromCoroutine(result).addCallback(_finish, command, finish)
        try:
            return finish(result)
        except ArgumentError:
            _misfit(command, result)
            raise


def _reply_message(command: Command, result: Any) -> Message:
    return ok(command.name, *command.format_reply(result))


def _finish(result: Any, command: Command, finish: Callable[[Any], Any]) -> Any:
    try:
        return finish(result)
    except ArgumentError:
        _misfit(command, result)
        raise


def _misfit(command: Command, result: Any) -> None:
    _log.error("backend answered {command} with {result!r}, which does not fit"
               " its reply shape", command=command.name, result=result)
