"""The exceptions that turn into ``fail`` and ``invalid`` replies.

Raise :class:`HandlerException` (or a subclass) from a backend method to
refuse a request: the client gets ``!name,fail,<message>``.  Anything else a
backend raises is a bug: the client gets a short ``fail`` and the traceback
goes to the log.  Each error says whose fault it is: the client's request
(:class:`ArgumentError`, :class:`InvalidRequest`) or the backend's answer
(:class:`ReplyShapeError`).
"""

from typing import Any

from discosbackend.grammar import FAIL, INVALID

__all__ = ["HandlerException", "BackendError", "ArgumentError", "NotSupportedError",
           "InvalidRequest", "ReplyShapeError", "OpenError"]


class HandlerException(Exception):
    """A request was refused; the reply is ``fail`` with this message as reason."""

    code = FAIL


class BackendError(HandlerException):
    """The backend cannot do what was asked (busy, out of range, hardware fault)."""


class ArgumentError(HandlerException, ValueError):
    """A request's arguments are wrong in number or kind."""


class NotSupportedError(HandlerException):
    """The backend does not implement this command."""


class InvalidRequest(HandlerException):
    """The request is not part of the protocol: the reply is ``invalid``."""

    code = INVALID


class ReplyShapeError(ValueError):
    """A backend method returned what its command's reply cannot carry.

    The backend's fault, not the client's: the server logs it as an error
    (with ``method``, the backend method, and ``result``, what it returned)
    and answers ``fail`` with this message as reason.
    """

    def __init__(self, reason: str, result: Any = None, method: str | None = None) -> None:
        super().__init__(reason)
        self.result = result
        self.method = method


class OpenError(Exception):
    """The backend's ``open()`` failed: the server cannot serve it.

    Raised when the server starts listening (from the handler's
    ``start()``); its message names the backend and the original error.
    """
