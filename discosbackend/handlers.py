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
from types import CoroutineType
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from discosbackend import __protocol_version__
from discosbackend.commands import Command, commands_of
from discosbackend.errors import (ArgumentError, HandlerException, InvalidRequest,
                                  NotSupportedError)
from discosbackend.grammar import Message, fail, ok

__all__ = ["Handler", "HandlerException", "DBProtocolHandler", "AlwaysOkHandler",
           "AlwaysFailHandler", "AlwaysRaiseHandler", "Reply"]

#: What :meth:`Handler.handle` returns.
Reply = Message | Deferred

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
        name = message.name
        command = self.commands.get(name)
        if command is None:
            raise InvalidRequest(f"unknown command {name!r}")
        arguments = message.arguments
        values = command.parse_arguments(arguments) if arguments or command.arguments else ()
        if command.method is None:
            return ok(name, __protocol_version__)
        method = getattr(self.backend, command.method, None)
        if method is None:
            raise NotSupportedError(f"not supported: {name}")
        if values:
            keep = self._keep.get(name, -1)
            if keep == -1:
                keep = self._keep[name] = _positional_limit(method)
            if keep is not None and len(values) > keep:
                # An older backend (get_tpi(self)) takes fewer optional values.
                values = values[:max(keep, command.required)]
        result = method(*values)
        if result.__class__ not in _PLAIN_RESULTS:
            if isinstance(result, Deferred):
                return result.addCallback(self._reply, command)
            if result.__class__ is CoroutineType:
                return Deferred.fromCoroutine(result).addCallback(self._reply, command)
        try:
            return ok(name, *command.format_reply(result))
        except ArgumentError:
            self._misfit(command, result)
            raise

    @classmethod
    def _reply(cls, result: Any, command: Command) -> Message:
        try:
            return ok(command.name, *command.format_reply(result))
        except ArgumentError:
            cls._misfit(command, result)
            raise

    @staticmethod
    def _misfit(command: Command, result: Any) -> None:
        _log.error("backend answered {command} with {result!r}, which does not fit"
                   " its reply shape", command=command.name, result=result)
