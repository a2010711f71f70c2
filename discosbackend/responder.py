"""One line in, exactly one reply line out.

:class:`Responder` is the single place that turns a received line into its
reply bytes: it parses the line, hands requests to a
:class:`~discosbackend.handlers.Handler`, applies the optional per-request
timeout, checks the handler's answer, and maps every error to a ``fail`` or
``invalid`` reply.  Whatever happens, each line gets one grammatical reply.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from discosbackend.commands import VERSION, reason_text
from discosbackend.errors import HandlerException, ReplyShapeError
from discosbackend.grammar import (ENCODING, ENCODING_ERRORS, FAIL, INVALID, NAME_PREFIX,
                                   REQUEST, UNDEFINED_NAME, GrammarException, Message, name_of,
                                   parse_line, reply, serialize_line, split_arguments)
from discosbackend.handlers import CloseAfter, Handler, RawReply, Reply
from discosbackend.logs import EXCHANGE_FORMAT
from discosbackend.reactor import or_global

__all__ = ["Responder", "ReplyBytes", "RawReply", "CloseAfter"]  # the last two from handlers

#: What :meth:`Responder.respond` returns: the reply line now, or later.
ReplyBytes = bytes | defer.Deferred[bytes]

_log = Logger()


def _error_reply(name: str, code: str, reason: str) -> bytes:
    # A reply line must stay under the real client's 512 bytes: a name too
    # long to be a command's (it can't be one) is not echoed.
    if len(name) >= NAME_PREFIX:
        name = UNDEFINED_NAME
    return serialize_line(reply(name, code, reason_text(reason) or code))


def _parse_request(line: bytes) -> Message:
    """The request ``line`` holds; raises :class:`GrammarException` if it holds none."""
    message = parse_line(line, line_end=False)
    if not message.is_request():
        raise GrammarException("requests must start with '?'", message.name)
    return message


def _shown(line: bytes) -> str:
    """A received line as text, for the log."""
    return line.decode(ENCODING, "replace")


class Responder:
    """Answers lines for one server, on behalf of ``handler``.

    ``timeout`` (seconds) bounds how long a handler may take to answer; the
    reply is then ``fail`` with a reason starting ``timeout`` (and a warning
    is logged).  ``clock`` is the reactor by default.  ``log_requests`` asks
    the connections to answer through :meth:`respond_logged`, which logs
    each exchange (see :mod:`discosbackend.logs`); :meth:`respond` itself
    never logs, so that a server that does not log pays nothing for it.
    """

    def __init__(self, handler: Handler, *, timeout: float | None = None,
                 clock: IReactorTime | None = None, log_requests: bool = False) -> None:
        self.handler = handler
        # The handler's routes, by the start of a line that takes them: b"?name".
        self._routes = {(REQUEST + name).encode(ENCODING): (name, route)
                        for name, route in handler.routes.items()}
        self.timeout = timeout
        self._clock = clock
        self.log_requests = log_requests

    def greeting(self) -> ReplyBytes:
        """The line a new connection gets first: the reply to ``?version``."""
        return self.respond(b"?" + VERSION.encode())

    def too_long(self, start: bytes, limit: int, peer: str = "-") -> bytes:
        """The reply to a line longer than ``limit`` bytes that starts with ``start``.

        Logged as an exchange with ``peer`` when requests are logged.
        """
        data = _error_reply(name_of(start), INVALID, f"line too long: over {limit} bytes")
        if self.log_requests:
            self._log_exchange(peer, start, data, self.now())
        return data

    def now(self) -> float:
        """The time on the responder's clock, in seconds."""
        return float(or_global(self._clock).seconds())

    def respond(self, line: bytes) -> ReplyBytes:
        """The reply to ``line`` (without its line end): bytes, or a Deferred of them.

        A line that starts with a routed ``?name`` goes to that route with its
        unescaped arguments; any other is parsed in full and, if it is a
        request, goes to the handler's ``handle``.
        """
        reply: ReplyBytes
        answer: Callable[[Any], Reply]  # a route, given arguments; or handle, given a message
        request: Any  # list[str] for a route, Message for handle
        head, comma, rest = line.partition(b",")
        routed = self._routes.get(head)
        try:
            if routed is None:
                message = _parse_request(line)
                name, answer, request = message.name, self.handler.handle, message
            else:
                name, answer = routed
                request = split_arguments(rest.decode(ENCODING, ENCODING_ERRORS),
                                          name) if comma else []
        except GrammarException as error:
            reply = _error_reply(error.name or UNDEFINED_NAME, INVALID, error.reason)
        else:
            try:
                answered = answer(request)
            except BaseException as error:  # pylint: disable=broad-except
                # Even SystemExit or KeyboardInterrupt from a backend method
                # gets its request a reply: the server goes on serving.
                reply = self._failed(Failure(error), name, line)
            else:  # wire bytes (as DBProtocolHandler gives) are ready as they are
                reply = answered if isinstance(answered, bytes) else self._settle(
                    answered, name, line)
        return reply

    def respond_logged(self, peer: str, line: bytes) -> ReplyBytes:
        """:meth:`respond`, logging the exchange once the reply is ready.

        ``peer`` names the client in the log; the duration logged runs from
        this call, the request's arrival, to its reply.
        """
        arrived = self.now()
        reply = self.respond(line)
        self._log_exchange(peer, line, reply, arrived)
        return reply

    def _log_exchange(self, peer: str, line: bytes, reply: ReplyBytes, arrived: float) -> None:
        """The one place an exchange is logged: at debug level, when ``reply`` is ready."""
        def log(data: bytes) -> bytes:
            _log.debug(EXCHANGE_FORMAT, peer=peer, request=_shown(line),
                       reply=_shown(data).rstrip("\r\n"),
                       duration_ms=(self.now() - arrived) * 1000.0)
            return data
        if isinstance(reply, defer.Deferred):
            reply.addCallback(log)
        else:
            log(reply)

    def _settle(self, answer: Any, name: str, line: bytes) -> ReplyBytes:
        """The reply bytes of the handler's ``answer``, now or when it fires."""
        if isinstance(answer, CloseAfter):
            settled = self._settle(answer.reply, name, line)
            if isinstance(settled, defer.Deferred):
                return settled.addCallback(RawReply, True)
            return RawReply(settled, True)
        if isinstance(answer, defer.Deferred):
            if self.timeout is not None:
                answer.addTimeout(self.timeout, or_global(self._clock))
            return answer.addCallbacks(self._answered, self._failed,
                                       callbackArgs=(name, line), errbackArgs=(name, line))
        return self._answered(answer, name, line)

    def _answered(self, answer: Any, name: str, line: bytes) -> bytes:
        if isinstance(answer, bytes):
            return answer  # wire bytes (or a RawReply), sent as they are
        if isinstance(answer, Message) and answer.is_reply() and answer.name == name:
            try:
                return serialize_line(answer)
            except GrammarException as error:
                _log.error("handler reply to {request} cannot be sent: {error}",
                           request=_shown(line), error=error)
                return _error_reply(name, FAIL, "internal error: unrepresentable reply")
        _log.error("handler {handler!r} answered {request} with {answer!r}, "
                   "which is not a reply to it", handler=self.handler,
                   request=_shown(line), answer=answer)
        return _error_reply(name, FAIL, "internal error: the handler gave no reply")

    def _failed(self, failure: Failure, name: str, line: bytes) -> bytes:
        error = failure.value
        if isinstance(error, HandlerException):
            return _error_reply(name, error.code, str(error) or type(error).__name__)
        if isinstance(error, ReplyShapeError):  # the backend's fault, not the client's
            _log.error("backend answered {request} with {result!r} from {method}(): {error}",
                       request=_shown(line), result=error.result, method=error.method,
                       error=error)
            return _error_reply(name, FAIL, str(error))
        if isinstance(error, defer.TimeoutError) and self.timeout is not None:
            _log.warn("no reply to {request} within {timeout:g} s: answered fail",
                      request=_shown(line), timeout=self.timeout)
            return _error_reply(name, FAIL, f"timeout after {self.timeout:g} s")
        _log.failure("handler failed on {request}", failure, request=_shown(line))
        return _error_reply(name, FAIL, f"internal error: {type(error).__name__}: {error}")
