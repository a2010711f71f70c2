"""Where a client connects: ``HOST:PORT`` or a Twisted client endpoint string.

:func:`parse_address` understands

- ``HOST:PORT``, ``HOST`` (port 8978), ``[IPv6]:PORT``, ``[IPv6]``;
- Twisted client endpoint strings: anything that contains ``=`` or starts
  with ``tcp:``, ``unix:``, ``ssl:`` or ``tls:``, for example
  ``tcp:host=backend.local:port=8978`` or ``unix:path=/run/backend.sock``
  (escape a ``:`` inside a value as ``\\:``).

Both clients and the command line use it.  The blocking client can reach
``tcp`` and ``unix`` addresses; the Twisted client hands endpoint strings
to :func:`twisted.internet.endpoints.clientFromString`, so it reaches every
kind of endpoint Twisted knows.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PORT", "Address", "parse_address"]

#: The port DISCOS backends conventionally listen on.
DEFAULT_PORT = 8978

_ENDPOINT_TYPES = frozenset(("tcp", "unix", "ssl", "tls"))


@dataclass(frozen=True)
class Address:
    """A parsed address.

    ``host`` and ``port`` are set for TCP, ``path`` for a Unix socket, and
    ``description`` holds the Twisted endpoint string when the address was
    given as one (for ``ssl:``/``tls:`` only ``description`` is set).
    """

    host: str | None = None
    port: int | None = None
    path: str | None = None
    description: str | None = None

    def __str__(self) -> str:
        if self.description is not None:
            return self.description
        if self.path is not None:
            return f"unix:path={self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else str(self.host)
        return f"{host}:{self.port}"


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r} in {where!r}: expected 1 to 65535")
    return int(text)


def _fields(description: str) -> list[tuple[str | None, str]]:
    """Split an endpoint string into (key or None, value) fields, unescaping ``\\``."""
    fields: list[tuple[str | None, str]] = []
    key: str | None = None
    current: list[str] = []
    characters = iter(description)
    for character in characters:
        if character == "\\":
            current.append(next(characters, ""))
        elif character == ":":
            fields.append((key, "".join(current)))
            key, current = None, []
        elif character == "=" and key is None:
            key, current = "".join(current), []
        else:
            current.append(character)
    fields.append((key, "".join(current)))
    return fields


def _parse_endpoint(description: str) -> Address:
    fields = _fields(description)
    kind = fields[0][1].lower()
    positional = [value for key, value in fields[1:] if key is None]
    named = {key: value for key, value in fields[1:] if key is not None}
    if kind == "tcp":
        host = named.get("host", positional[0] if positional else "")
        port = named.get("port", positional[1] if len(positional) > 1 else "")
        if not host or not port:
            raise ValueError(f"{description!r} needs a host and a port")
        return Address(host=host, port=_port(port, description), description=description)
    if kind == "unix":
        path = named.get("path", positional[0] if positional else "")
        if not path:
            raise ValueError(f"{description!r} needs a path")
        return Address(path=path, description=description)
    return Address(description=description)


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> Address:
    """Parse ``HOST:PORT``, ``[IPv6]:PORT``, ``HOST`` or an endpoint string.

    Raises ``ValueError`` with a one-line reason if ``text`` is not an address.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if "=" in text or text.split(":", 1)[0].lower() in _ENDPOINT_TYPES and ":" in text:
        return _parse_endpoint(text)
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1:]
        if end < 0 or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: expected [IPv6]:PORT")
        port = _port(rest[1:], text) if rest else default_port
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, text)
    else:  # a host name, an IPv4 address, or a bare IPv6 address
        host, port = text, default_port
    if not host or any(character.isspace() for character in host):
        raise ValueError(f"bad address {text!r}: expected HOST:PORT")
    return Address(host=host, port=port)
