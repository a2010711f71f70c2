"""Clients for DISCOS backends: Twisted and blocking.

- :func:`connect` / :class:`DBClientProtocol`: the Twisted client; every
  request returns a Deferred.
- :class:`ReconnectingClient`: the Twisted client that reconnects with backoff.
- :class:`BlockingClient`: plain sockets, no reactor; every request returns
  its value.

All of them have the same typed helpers (``status()``, ``get_tpi()``,
``start(at=...)``, ...; see :class:`~discosbackend.client.typed.TypedCommands`)
and raise the errors in :mod:`discosbackend.client.errors`.
"""

from discosbackend.client.address import DEFAULT_PORT, Address, parse_address
from discosbackend.client.blocking import BlockingClient
from discosbackend.client.errors import (ClientError, CommandError, CommandFailed,
                                         CommandInvalid, ConnectFailed, ConnectionLost,
                                         ProtocolError, RequestTimeout)
from discosbackend.client.protocol import (DBClientFactory, DBClientProtocol, client_endpoint,
                                           connect)
from discosbackend.client.reconnecting import ReconnectingClient
from discosbackend.client.typed import Call, Status, TypedCommands, format_argument

__all__ = [
    "connect", "DBClientProtocol", "DBClientFactory", "ReconnectingClient",
    "BlockingClient", "client_endpoint", "Address", "parse_address", "DEFAULT_PORT",
    "ClientError", "CommandError", "CommandFailed", "CommandInvalid", "ConnectFailed",
    "ConnectionLost", "ProtocolError", "RequestTimeout",
    "Status", "Call", "TypedCommands", "format_argument",
]
