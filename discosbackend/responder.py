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
                                   parse_message, reply, serialize_line)
from discosbackend.handlers import Handler

__all__ = ["Responder", "ReplyBytes", "RawReply"]

#: What :meth:`Responder.respond` returns: the reply line now, or later.
ReplyBytes = bytes | defer.Deferred

_log = Logger()
_NAME_PREFIX = 64


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
        try:
            message = parse_message(line.decode(ENCODING, ENCODING_ERRORS))
        except GrammarException as error:
            return _error_reply(error.name or UNDEFINED_NAME, INVALID, error.reason)
        if message.message_type != REQUEST:
            return _error_reply(message.name, INVALID, "requests must start with '?'")
        if self.log_requests:
            _log.debug("request {request}", request=str(message))
        try:
            answer = self.handler.handle(message)
        except Exception as error:  # pylint: disable=broad-except
            return self._failed(Failure(error), message)
        if answer.__class__ is not Message and isinstance(answer, defer.Deferred):
            if self.timeout is not None:
                answer.addTimeout(self.timeout, self.clock)
            return answer.addCallbacks(self._answered, self._failed,
                                       callbackArgs=(message,), errbackArgs=(message,))
        return self._answered(answer, message)

    def too_long(self, start: bytes, limit: int) -> bytes:
        """The reply to a line longer than ``limit`` bytes that starts with ``start``."""
        return _error_reply(name_of(start), INVALID, f"line too long: over {limit} bytes")

    def _answered(self, answer: Any, request: Message) -> bytes:
        if answer.__class__ is RawReply:
            return answer
        if not (isinstance(answer, Message) and answer.is_correct_reply(request)):
            _log.error("handler {handler!r} answered {request} with {answer!r}, "
                       "which is not a reply to it", handler=self.handler,
                       request=str(request), answer=answer)
            return _error_reply(request.name, FAIL, "internal error: the handler gave no reply")
        try:
            data = (str(answer) + EOL).encode(ENCODING, ENCODING_ERRORS)
        except (GrammarException, UnicodeEncodeError) as error:
            _log.error("handler reply to {request} cannot be sent: {error}",
                       request=str(request), error=error)
            return _error_reply(request.name, FAIL, "internal error: unrepresentable reply")
        if self.log_requests:
            _log.debug("reply {reply}", reply=data.decode("utf-8", "replace").rstrip())
        return data

    def _failed(self, failure: Failure, request: Message) -> bytes:
        error = failure.value
        if isinstance(error, HandlerException):
            return _error_reply(request.name, error.code, str(error) or type(error).__name__)
        if isinstance(error, defer.TimeoutError) and self.timeout is not None:
            return _error_reply(request.name, FAIL,
                                f"timeout after {self.timeout:g} s")
        _log.failure("handler failed on {request}", failure, request=str(request))
        return _error_reply(request.name, FAIL,
                            f"internal error: {type(error).__name__}: {error}")
