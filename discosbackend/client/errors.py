"""The exceptions the clients raise (or fail their Deferreds with).

Every one is a :class:`ClientError`.  A reply that is not ``ok`` becomes a
:class:`CommandFailed` or :class:`CommandInvalid` carrying the server's
``reason``, the ``reply`` and the ``request``; the connection stays usable.
:class:`ConnectFailed`, :class:`ConnectionLost`, :class:`RequestTimeout` and
:class:`ProtocolError` are about the connection itself.
"""

from __future__ import annotations

import errno
import os
import socket

from twisted.internet import error as twisted_errors

from discosbackend.grammar import INVALID, OK, Message

__all__ = ["ClientError", "CommandError", "CommandFailed", "CommandInvalid",
           "ConnectFailed", "ConnectionLost", "RequestTimeout", "ProtocolError",
           "error_for_reply", "cannot_connect"]


class ClientError(Exception):
    """Base class of everything the clients raise."""


class CommandError(ClientError):
    """The server answered a request with ``fail`` or ``invalid``.

    ``reason`` is the reason the server gave (all the reply's arguments
    joined with ``,`` when it gave several, ``""`` when it gave none),
    ``reply`` the reply :class:`~discosbackend.grammar.Message` and
    ``request`` the request message it answers.
    """

    def __init__(self, request: Message, reply: Message) -> None:
        self.request = request
        self.reply = reply
        self.reason = ",".join(reply.arguments)
        super().__init__(f"{request.name}: {reply.code}: {self.reason}" if self.reason
                         else f"{request.name}: {reply.code}")


class CommandFailed(CommandError):
    """The server answered ``fail``: a known command was refused."""


class CommandInvalid(CommandError):
    """The server answered ``invalid``: the request is not part of the protocol."""


class ConnectFailed(ClientError, ConnectionError):
    """The connection could not be opened, or no greeting came."""


class ConnectionLost(ClientError, ConnectionError):
    """The connection closed (or is not open) before the reply came."""


class RequestTimeout(ClientError, TimeoutError):
    """No reply came within the request's timeout."""


class ProtocolError(ClientError):
    """The server sent something the protocol does not allow.

    For example a line that does not parse, a reply to another request, or
    an ``ok`` reply whose values do not have the command's shape.
    """


def error_for_reply(request: Message, reply: Message) -> CommandError | None:
    """The error a non-``ok`` ``reply`` to ``request`` means; ``None`` for ``ok``."""
    if reply.code == OK:
        return None
    if reply.code == INVALID:
        return CommandInvalid(request, reply)
    return CommandFailed(request, reply)  # FAIL, the only other code


_TIMEOUTS = (socket.timeout, TimeoutError, twisted_errors.TimeoutError,
             twisted_errors.TCPTimedOutError)


def cannot_connect(where: object, error: BaseException, timeout: float | None = None) -> str:
    """The one wording of a connection that could not be opened, whoever tried.

    ``cannot connect to WHERE: Connection refused`` for the blocking
    client's socket errors and Twisted's connection errors alike;
    ``timed out after N s`` when ``timeout`` (seconds) ran out.
    """
    if isinstance(error, _TIMEOUTS):
        reason = "timed out" + (f" after {timeout:g} s" if timeout else "")
    elif isinstance(error, twisted_errors.ConnectionRefusedError):
        reason = os.strerror(errno.ECONNREFUSED)
    elif isinstance(error, twisted_errors.ConnectError) and isinstance(error.osError, int):
        reason = os.strerror(error.osError)
    elif isinstance(error, twisted_errors.ConnectError) and error.args and error.args[0]:
        reason = str(error.args[0])
    elif isinstance(error, OSError):
        reason = error.strerror or str(error) or type(error).__name__
    else:
        reason = str(error) or type(error).__name__
    reason = reason.rstrip(".")  # Twisted ends its texts with one, the OS does not
    return f"cannot connect to {where}: {reason}"
