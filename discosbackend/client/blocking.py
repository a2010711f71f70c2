"""A blocking client on plain sockets: for scripts, notebooks and other test frameworks.

::

    from discosbackend.client import BlockingClient

    with BlockingClient.connect("127.0.0.1:8978", timeout=5) as backend:
        print(backend.server_version, backend.status())
        backend.set_integration(40)
        print(backend.get_tpi())

Each call sends one request and waits for its reply.  A ``fail`` or
``invalid`` reply raises ``CommandFailed`` / ``CommandInvalid`` and the
connection stays usable.  Anything that leaves the connection out of step
(a timeout, a broken connection, a reply that does not parse or answers
another request) closes the client and raises ``RequestTimeout``,
``ConnectionLost`` or ``ProtocolError``: connect again to go on.
No reactor is involved.
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import TypeVar

from discosbackend.client.address import DEFAULT_PORT, Address, parse_address
from discosbackend.client.errors import (ClientError, ConnectFailed, ConnectionLost,
                                         ProtocolError, RequestTimeout, cannot_connect,
                                         error_for_reply)
from discosbackend.client.typed import Call, TypedCommands, format_argument
from discosbackend.commands import VERSION
from discosbackend.grammar import (ENCODING, ENCODING_ERRORS, INVALID, OK, UNDEFINED_NAME,
                                   GrammarException, Message, parse_message, request,
                                   serialize_line)

__all__ = ["BlockingClient", "DEFAULT_TIMEOUT"]

#: Seconds to wait for connecting and for each reply, by default.
DEFAULT_TIMEOUT = 10.0
#: The longest line accepted from the server.
MAX_LINE = 1024 * 1024

T = TypeVar("T")
_CHUNK = 65536


class BlockingClient(TypedCommands):
    """A connection to a backend, one request at a time.

    ``BlockingClient(host, port)`` connects over TCP, ``BlockingClient(path=...)``
    over a Unix socket; :meth:`connect` takes an address string.  The
    greeting is read before the constructor returns (:attr:`server_version`).
    ``timeout`` (seconds, ``None`` for none) applies to connecting and to
    each reply.  Raises :class:`~discosbackend.client.errors.ConnectFailed`
    if the connection cannot be opened or no proper greeting comes.
    """

    def __init__(self, host: str | None = None, port: int = DEFAULT_PORT,
                 timeout: float | None = DEFAULT_TIMEOUT, *, path: str | None = None) -> None:
        self.timeout = timeout
        self._buffer = b""
        self._socket: socket.socket | None = None
        #: The greeting line as received (without the line end).
        self.greeting_line = ""
        #: The greeting message.
        self.greeting: Message | None = None
        #: The protocol version the greeting announced.
        self.server_version: str | None = None
        if path is not None:
            self.address = Address(path=path)
        elif host:
            self.address = Address(host=host, port=port)
        else:
            raise ValueError("give a host (and port) or a Unix socket path")
        self._socket = self._open()
        self._greet()

    @classmethod
    def connect(cls, where: str | Address,
                timeout: float | None = DEFAULT_TIMEOUT) -> BlockingClient:
        """Connect to ``HOST:PORT``, ``[IPv6]:PORT``, ``tcp:...`` or ``unix:path=...``."""
        address = parse_address(where) if isinstance(where, str) else where
        if address.path is not None:
            return cls(path=address.path, timeout=timeout)
        if address.host is None or address.port is None:
            raise ValueError(f"the blocking client cannot connect to {address}: "
                             "use HOST:PORT, tcp: or unix:")
        return cls(address.host, address.port, timeout=timeout)

    def _open(self) -> socket.socket:
        address = self.address
        try:
            if address.path is not None:
                connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    connection.settimeout(self.timeout)
                    connection.connect(address.path)
                except BaseException:
                    connection.close()
                    raise
            else:
                connection = socket.create_connection((address.host, address.port),
                                                      timeout=self.timeout)
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:  # socket.timeout included
            raise ConnectFailed(cannot_connect(address, error, self.timeout)) from None
        connection.settimeout(self.timeout)
        return connection

    def _greet(self) -> None:
        try:
            line = self._read_line()
        except RequestTimeout:
            raise ConnectFailed(f"no greeting from {self.address} within "
                                f"{self.timeout:g} s") from None
        except ConnectionLost as error:
            raise ConnectFailed(f"no greeting from {self.address}: {error}") from None
        try:
            greeting = self._parse(line)
        except ProtocolError as error:
            raise ConnectFailed(f"bad greeting from {self.address}: {error}") from None
        if (not greeting.is_reply() or greeting.name != VERSION or greeting.code != OK
                or not greeting.arguments):
            self.close()
            raise ConnectFailed(f"unexpected greeting from {self.address} {line[:80]!r}: "
                                f"expected !{VERSION},{OK},<version>")
        self.greeting_line = line
        self.greeting = greeting
        self.server_version = greeting.arguments[0]

    # -- context manager and closing ------------------------------------

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self._socket is None

    def close(self) -> None:
        """Close the connection (again is fine)."""
        connection, self._socket = self._socket, None
        self._buffer = b""
        if connection is not None:
            connection.close()

    # -- requests -------------------------------------------------------

    def request(self, name: str, *arguments: object) -> Message:
        """Send ``?name,arguments...`` and return the ``ok`` reply message.

        Non-string arguments are formatted like
        :func:`~discosbackend.client.typed.format_argument`.  Raises
        ``CommandFailed``/``CommandInvalid`` for a ``fail``/``invalid`` reply.
        """
        message = request(name, *(format_argument(argument) for argument in arguments))
        reply, _line = self.exchange(message)
        error = error_for_reply(message, reply)
        if error is not None:
            raise error
        return reply

    def exchange(self, message: Message) -> tuple[Message, str]:
        """Send request ``message``; return its reply, whatever the code, and the line.

        The line is the reply exactly as received, without its line end.
        Raises only for connection and protocol problems.
        """
        if not message.is_request():
            raise ValueError(f"not a request: {message}")
        data = serialize_line(message)
        connection = self._socket
        if connection is None:
            raise ConnectionLost(f"{message.name}: the client is closed")
        try:
            connection.sendall(data)
        except socket.timeout:
            self.close()
            raise RequestTimeout(
                f"{message.name}: cannot send within {self.timeout:g} s") from None
        except OSError as error:
            self.close()
            raise ConnectionLost(f"{message.name}: connection lost: "
                                 f"{error.strerror or error}") from None
        try:
            line = self._read_line()
        except ClientError as error:
            raise type(error)(f"{message.name}: {error}") from None
        reply = self._parse(line)
        if not reply.is_reply() or (reply.name != message.name and not (
                reply.code == INVALID and reply.name == UNDEFINED_NAME)):
            self.close()
            raise ProtocolError(f"reply {line[:80]!r} does not answer {str(message)[:80]!r}")
        return reply, line

    def _perform(self, call: Call[T]) -> T:
        return call.convert(self.request(call.name, *call.arguments))

    # -- reading --------------------------------------------------------

    def _parse(self, line: str) -> Message:
        try:
            return parse_message(line)
        except GrammarException as error:
            self.close()
            raise ProtocolError(f"unreadable line from the server {line[:80]!r}: "
                                f"{error.reason}") from None

    def _read_line(self) -> str:
        """The next line from the server, without CR LF; closes on any problem."""
        connection = self._socket
        if connection is None:
            raise ConnectionLost("the client is closed")
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 1:]
                if line.endswith(b"\r"):
                    line = line[:-1]
                return line.decode(ENCODING, ENCODING_ERRORS)
            if len(self._buffer) > MAX_LINE:
                self.close()
                raise ProtocolError(f"line from the server longer than {MAX_LINE} bytes")
            try:
                chunk = connection.recv(_CHUNK)
            except socket.timeout:
                self.close()
                raise RequestTimeout(f"no reply within {self.timeout:g} s") from None
            except OSError as error:
                self.close()
                raise ConnectionLost(f"connection lost: {error.strerror or error}") from None
            if not chunk:
                self.close()
                raise ConnectionLost("connection closed by the server")
            self._buffer += chunk
