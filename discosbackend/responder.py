"""One line in, exactly one reply line out.

:class:`Responder` is the single place that turns a received line into its
reply bytes: it parses the line, hands requests to a
:class:`~discosbackend.handlers.Handler`, applies the optional per-request
timeout, checks the handler's answer, and maps every error to a ``fail`` or
``invalid`` reply (PROTOCOL.md section 3).  Whatever happens, each line gets
one grammatical reply.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from discosbackend.commands import VERSION, reason_text
from discosbackend.errors import HandlerException
from discosbackend.grammar import (ENCODING, ENCODING_ERRORS, EOL, FAIL, INVALID,
                                   REQUEST, UNDEFINED_NAME, GrammarException, Message,
                                   parse_message, reply, serialize_line, split_arguments)
from discosbackend.handlers import Handler, Route

__all__ = ["Responder", "ReplyBytes", "RawReply"]

#: What :meth:`Responder.respond` returns: the reply line now, or later.
ReplyBytes = bytes | defer.Deferred

_log = Logger()
_NAME_PREFIX = 64
_ROUTES_KEPT = 1024


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


def _error_reply(name: str, code: str, reason: str) -> bytes:
    return serialize_line(reply(name, code, reason_text(reason) or code))


def _shown(line: bytes) -> str:
    """A received line as text, for the log."""
    return line.decode(ENCODING, "replace")


def name_of(line: bytes) -> str:
    """The request name at the start of a (possibly broken) line, or ``undefined``."""
    head, comma, _ = line[1:_NAME_PREFIX].partition(b",")
    if not comma and len(line) >= _NAME_PREFIX:
        return UNDEFINED_NAME  # the name goes on past what we looked at
    try:
        return Message("?", head.decode("ascii", "replace")).name
    except GrammarException:
        return UNDEFINED_NAME


class Responder:
    """Answers lines for one server, on behalf of ``handler``.

    ``timeout`` (seconds) bounds how long a handler may take to answer; the
    reply is then ``fail`` with a reason starting ``timeout``.  ``clock`` is
    the reactor by default.  With ``log_requests`` each request and reply is
    logged at debug level.
    """

    def __init__(self, handler: Handler, *, timeout: float | None = None,
                 clock: IReactorTime | None = None, log_requests: bool = False) -> None:
        self.handler = handler
        self.timeout = timeout
        # Each request name's route, by the line's start (b"?name").
        self._routes: dict[bytes, tuple[str, Route]] = {}
        self._clock = clock
        self.log_requests = log_requests

    @property
    def clock(self) -> IReactorTime:
        """The clock that times requests out."""
        if self._clock is None:
            from twisted.internet import reactor
            self._clock = reactor  # type: ignore[assignment]
        return self._clock  # type: ignore[return-value]

    def greeting(self) -> ReplyBytes:
        """The line a new connection gets first: the reply to ``?version``."""
        return self.respond(b"?" + VERSION.encode())

    def respond(self, line: bytes) -> ReplyBytes:
        """The reply to ``line`` (without its line end): bytes, or a Deferred of them."""
        head, comma, rest = line.partition(b",")
        known = self._routes.get(head)
        if known is None:
            return self._respond_first(line)
        name, route = known
        if comma:
            try:
                arguments = split_arguments(rest.decode(ENCODING, ENCODING_ERRORS), name)
            except GrammarException as error:
                return _error_reply(name, INVALID, error.reason)
        else:
            arguments = []
        if self.log_requests:
            _log.debug("request {request}", request=_shown(line))
        try:
            answer = route(arguments)
        except Exception as error:  # pylint: disable=broad-except
            return self._failed(Failure(error), name, line)
        if answer.__class__ is bytes and not self.log_requests:
            return answer  # the hot path: a route's own wire bytes
        return self._settle(answer, name, line)

    def _respond_first(self, line: bytes) -> ReplyBytes:
        """Parse ``line`` in full and, for a request, learn its name's route."""
        try:
            message = parse_message(line.decode(ENCODING, ENCODING_ERRORS), line_end=False)
        except GrammarException as error:
            return _error_reply(error.name or UNDEFINED_NAME, INVALID, error.reason)
        if message.message_type != REQUEST:
            return _error_reply(message.name, INVALID, "requests must start with '?'")
        if len(self._routes) >= _ROUTES_KEPT:
            self._routes.clear()  # junk names: start again rather than grow
        self._routes[line.partition(b",")[0]] = (message.name,
                                                 self.handler.route(message.name))
        return self.respond(line)

    def _settle(self, answer: Any, name: str, line: bytes) -> ReplyBytes:
        """The reply bytes of a route's ``answer``, now or when it fires."""
        if answer.__class__ is not Message and isinstance(answer, defer.Deferred):
            if self.timeout is not None:
                answer.addTimeout(self.timeout, self.clock)
            return answer.addCallbacks(self._answered, self._failed,
                                       callbackArgs=(name, line), errbackArgs=(name, line))
        return self._answered(answer, name, line)

    def too_long(self, start: bytes, limit: int) -> bytes:
        """The reply to a line longer than ``limit`` bytes that starts with ``start``."""
        return _error_reply(name_of(start), INVALID, f"line too long: over {limit} bytes")

    def _answered(self, answer: Any, name: str, line: bytes) -> bytes:
        if isinstance(answer, bytes):
            data = answer  # wire bytes (or a RawReply), sent as they are
        elif isinstance(answer, Message) and answer.is_reply() and answer.name == name:
            try:
                data = (str(answer) + EOL).encode(ENCODING, ENCODING_ERRORS)
            except (GrammarException, UnicodeEncodeError) as error:
                _log.error("handler reply to {request} cannot be sent: {error}",
                           request=_shown(line), error=error)
                return _error_reply(name, FAIL, "internal error: unrepresentable reply")
        else:
            _log.error("handler {handler!r} answered {request} with {answer!r}, "
                       "which is not a reply to it", handler=self.handler,
                       request=_shown(line), answer=answer)
            return _error_reply(name, FAIL, "internal error: the handler gave no reply")
        if self.log_requests:
            _log.debug("reply {reply}", reply=data.decode(ENCODING, "replace").rstrip())
        return data

    def _failed(self, failure: Failure, name: str, line: bytes) -> bytes:
        error = failure.value
        if isinstance(error, HandlerException):
            return _error_reply(name, error.code, str(error) or type(error).__name__)
        if isinstance(error, defer.TimeoutError) and self.timeout is not None:
            return _error_reply(name, FAIL, f"timeout after {self.timeout:g} s")
        _log.failure("handler failed on {request}", failure, request=_shown(line))
        return _error_reply(name, FAIL, f"internal error: {type(error).__name__}: {error}")
