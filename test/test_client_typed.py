"""Tests for the client's shared pieces: addresses, argument formatting,
reply parsing and the error classes."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from astropy.time import Time
from twisted.internet import error as twisted_errors

from discosbackend import timediscos
from discosbackend.client import (DEFAULT_PORT, Address, ClientError, CommandError,
                                  CommandFailed, CommandInvalid, ConnectFailed, ConnectionLost,
                                  ProtocolError, RequestTimeout, TypedCommands, format_argument,
                                  parse_address)
from discosbackend.client.errors import cannot_connect, error_for_reply
from discosbackend.client.typed import parse_values, timestamp_ticks
from discosbackend.grammar import reply, request

# --------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text, host, port", [
    ("127.0.0.1:8978", "127.0.0.1", 8978),
    (" backend.local:1 ", "backend.local", 1),
    ("backend", "backend", DEFAULT_PORT),
    ("[::1]:9000", "::1", 9000),
    ("[fe80::1%eth0]", "fe80::1%eth0", DEFAULT_PORT),
    ("::1", "::1", DEFAULT_PORT),
])
def test_host_and_port(text: str, host: str, port: int) -> None:
    address = parse_address(text)
    assert (address.host, address.port, address.path, address.description) \
        == (host, port, None, None)


@pytest.mark.parametrize("text, host, port, path", [
    ("tcp:host=backend:port=8978", "backend", 8978, None),
    ("tcp:backend:8978", "backend", 8978, None),
    ("TCP:host=\\:\\:1:port=5:timeout=3", "::1", 5, None),
    ("unix:path=/run/b.sock", None, None, "/run/b.sock"),
    ("unix:/run/b.sock:timeout=2", None, None, "/run/b.sock"),
    ("ssl:host=backend:port=8978", None, None, None),
])
def test_endpoint_strings(text: str, host: str | None, port: int | None,
                          path: str | None) -> None:
    address = parse_address(text)
    assert (address.host, address.port, address.path) == (host, port, path)
    assert address.description == text
    assert str(address) == text


@pytest.mark.parametrize("text", [
    "", "  ", "host:", "host:0", "host:65536", "host:http", ":8978", "[::1", "[]:1",
    "[::1]8978", "[::1]:x", "two words:1", "tcp:host=backend", "tcp:backend", "unix:",
    "unix:timeout=3",
])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_address_text() -> None:
    assert str(Address(host="::1", port=1)) == "[::1]:1"
    assert str(Address(host="backend", port=2)) == "backend:2"
    assert str(Address(path="/tmp/s")) == "unix:path=/tmp/s"
    assert parse_address("backend", default_port=1).port == 1


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------

WHEN = Time("2025-01-10T10:10:12.1234567", scale="utc", precision=7)
WHEN_TICKS = timediscos.time_to_acs(WHEN)


@pytest.mark.parametrize("value, text", [
    ("as is,\\", "as is,\\"),
    (True, "1"), (False, "0"),
    (0, "0"), (-15, "-15"), (np.int32(7), "7"), (2**70, str(2**70)),
    (1500.0, "1500.0"), (1e6, "1000000.0"), (np.float32(0.5), "0.5"),
    (Fraction(1, 4), "0.25"), (Decimal("2.5"), "2.5"),
    (WHEN, str(WHEN_TICKS)),
    (datetime(2020, 1, 1), "15778368000000000"),
])
def test_format_argument(value: Any, text: str) -> None:
    assert format_argument(value) == text


@pytest.mark.parametrize("value, error", [
    (float("nan"), ValueError), (float("inf"), ValueError), (None, TypeError),
    (b"bytes", TypeError), ([1], TypeError),
])
def test_format_argument_refuses(value: Any, error: type) -> None:
    with pytest.raises(error):
        format_argument(value)


@pytest.mark.parametrize("value, ticks", [
    (WHEN, WHEN_TICKS),
    (Time(WHEN_TICKS / 1e7, format="unix", scale="utc"), WHEN_TICKS),
    (datetime(2020, 1, 1, tzinfo=timezone.utc), 15778368000000000),
    (datetime(2020, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 15778368000000000),
    (1577836800, 15778368000000000),
    (1577836800.5, 15778368005000000),
    (np.float64(1.5), 15000000),
    (np.int64(2), 20000000),
    (Decimal("1577836800.1234567"), 15778368001234567),
    (Fraction(3, 2), 15000000),
])
def test_timestamp_ticks(value: Any, ticks: int) -> None:
    assert timestamp_ticks(value) == ticks


@pytest.mark.parametrize("value", [True, "1577836800", None])
def test_timestamp_ticks_refuses(value: Any) -> None:
    with pytest.raises(TypeError):
        timestamp_ticks(value)


# --------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------

def test_parse_values() -> None:
    status = parse_values("status", reply("status", "ok", "1763679223.1234567", "ok", "0"))
    assert timediscos.time_to_acs(status[0]) == 17636792231234567
    assert status[0].format == "isot"
    assert status[1:] == ["ok", False]
    assert parse_values("get-tpi", reply("get-tpi", "ok", "1", "2.5")) == [1.0, 2.5]
    assert parse_values("start", reply("start", "ok", "ignored")) == []
    assert parse_values("my-extension", reply("my-extension", "ok", "a", "")) == ["a", ""]


@pytest.mark.parametrize("name, values", [
    ("status", ["1.0000000", "ok"]),
    ("status", ["soon", "ok", "0"]),
    ("get-integration", ["forty"]),
    ("get-tpi", ["1", "inf"]),
])
def test_parse_values_refuses(name: str, values: list[str]) -> None:
    with pytest.raises(ProtocolError, match="bad reply"):
        parse_values(name, reply(name, "ok", *values))


def test_typed_commands_need_perform() -> None:
    with pytest.raises(NotImplementedError):
        TypedCommands().status()


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_error_for_reply() -> None:
    asked = request("set-shift", "x")
    assert error_for_reply(asked, reply("set-shift", "ok")) is None
    failed = error_for_reply(asked, reply("set-shift", "fail", "invalid shift 'x'"))
    assert isinstance(failed, CommandFailed) and isinstance(failed, CommandError)
    assert failed.reason == "invalid shift 'x'"
    assert failed.request is asked
    assert str(failed) == "set-shift: fail: invalid shift 'x'"
    invalid = error_for_reply(asked, reply("set-shift", "invalid", "a", "b"))
    assert isinstance(invalid, CommandInvalid) and invalid.reason == "a,b"
    bare = error_for_reply(asked, reply("set-shift", "fail"))
    assert str(bare) == "set-shift: fail" and bare.reason == ""


def test_error_hierarchy() -> None:
    for error in (CommandFailed, CommandInvalid, ConnectFailed, ConnectionLost,
                  RequestTimeout, ProtocolError):
        assert issubclass(error, ClientError)
    assert issubclass(ConnectionLost, ConnectionError)
    assert issubclass(ConnectFailed, ConnectionError)
    assert issubclass(RequestTimeout, TimeoutError)


@pytest.mark.parametrize("error, timeout, reason", [
    (ConnectionRefusedError(111, "Connection refused"), None, "Connection refused"),
    (twisted_errors.ConnectionRefusedError(111, "Connection refused"), None,
     "Connection refused"),
    (twisted_errors.ConnectionRefusedError(), None, "Connection refused"),
    (twisted_errors.ConnectError(string="No route to host."), None, "No route to host"),
    (twisted_errors.ConnectError(), None, "An error occurred while connecting"),
    (twisted_errors.ConnectError(113, "ignored"), None, "No route to host"),
    (socket.timeout("timed out"), 2.5, "timed out after 2.5 s"),
    (twisted_errors.TimeoutError(), 10.0, "timed out after 10 s"),
    (twisted_errors.TCPTimedOutError(), None, "timed out"),
    (socket.gaierror(-2, "Name or service not known"), None, "Name or service not known"),
    (OSError(), None, "OSError"),
    (twisted_errors.DNSLookupError("no such host"), None, "DNS lookup failed: no such host"),
])
def test_one_wording_for_a_connection_that_cannot_be_opened(
        error: BaseException, timeout: float | None, reason: str) -> None:
    assert cannot_connect("host:8978", error, timeout) == f"cannot connect to host:8978: {reason}"
