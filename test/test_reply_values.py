"""What a backend naturally returns, over a real socket: every kind of value
for every reply field, written exactly; and what no field can carry,
refused with a reason naming the field.

The backend here returns whatever the test puts in :attr:`Returning.answers`;
each case asks one request on a loopback connection and compares the reply
bytes.
"""

from __future__ import annotations

import array
import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable

import numpy as np
import pytest
import pytest_twisted
from astropy.time import Time
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols.basic import LineOnlyReceiver

from discosbackend import server
from discosbackend.backend import Backend
from discosbackend.commands import COMMANDS
from discosbackend.grammar import parse_line
from discosbackend.handlers import DBProtocolHandler
from discosbackend.timediscos import ACS_EPOCH_TICKS, acs_to_time

UNIX = "1700000000.1234567"
TICKS = 17_000_000_001_234_567
WHEN = datetime.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=datetime.timezone.utc)


class Returning(Backend):
    """Each command method returns ``answers[method]()``."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, Callable[[], Any]] = {}


def _answering(method: str) -> Callable[..., Any]:
    def answer(self: Returning, *_: Any) -> Any:
        return self.answers[method]()
    answer.__name__ = method
    return answer


for _command in COMMANDS.values():
    if _command.method is not None:
        setattr(Returning, _command.method, _answering(_command.method))


class Lines(LineOnlyReceiver):
    """A client that collects reply lines and hands out the next one."""

    def __init__(self) -> None:
        self.waiting: list[defer.Deferred[bytes]] = []
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        if self.waiting:
            self.waiting.pop(0).callback(line)
        else:
            self.lines.append(line)

    def next_line(self) -> defer.Deferred[bytes]:
        if self.lines:
            return defer.succeed(self.lines.pop(0))
        waiter: defer.Deferred[bytes] = defer.Deferred()
        self.waiting.append(waiter)
        return waiter


@pytest.fixture(name="backend", scope="module")
def fixture_backend() -> Returning:
    return Returning()


@pytest.fixture(name="connection", scope="module")
def fixture_connection(backend: Returning) -> Any:
    port = pytest_twisted.blockon(server.listen(0, DBProtocolHandler(backend),
                                                interface="127.0.0.1"))
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    lines = pytest_twisted.blockon(connectProtocol(endpoint, Lines()))
    assert pytest_twisted.blockon(lines.next_line()) == b"!version,ok,1.4"
    yield lines
    lines.transport.loseConnection()
    pytest_twisted.blockon(server.stop(port))


@pytest_twisted.inlineCallbacks
def ask(connection: Lines, backend: Returning, method: str, value: Callable[[], Any],
        request: bytes) -> Any:
    backend.answers[method] = value
    connection.transport.write(request + b"\r\n")
    reply = yield connection.next_line()
    return reply


def values(*made: Callable[[], Any]) -> list[Callable[[], Any]]:
    return list(made)


#: (request, method, what the method returns (made fresh each time), reply)
ACCEPTED = [
    # -- timestamps: status and time --------------------------------------
    (b"?time", "time", lambda: 1700000000.1234567, UNIX),
    (b"?time", "time", lambda: 1700000000, "1700000000.0000000"),
    (b"?time", "time", lambda: np.float64(1700000000.5), "1700000000.5000000"),
    (b"?time", "time", lambda: np.int64(1700000000), "1700000000.0000000"),
    (b"?time", "time", lambda: "1700000000.1234567", UNIX),
    (b"?time", "time", lambda: "1700000000.12345674999", UNIX),  # any number of decimals
    (b"?time", "time", lambda: "1700000000", "1700000000.0000000"),
    (b"?time", "time", lambda: Decimal(UNIX), UNIX),
    (b"?time", "time", lambda: Fraction(TICKS, 10**7), UNIX),
    (b"?time", "time", lambda: acs_to_time(TICKS), UNIX),
    (b"?time", "time", lambda: WHEN, "1700000000.1234560"),
    (b"?time", "time", lambda: WHEN.replace(tzinfo=None), "1700000000.1234560"),  # naive: UTC
    (b"?time", "time", lambda: WHEN.astimezone(datetime.timezone(datetime.timedelta(hours=2))),
     "1700000000.1234560"),
    (b"?time", "time", lambda: np.datetime64("2023-11-14T22:13:20.1234567"), UNIX),
    (b"?time", "time", lambda: TICKS, UNIX),  # 100 ns ticks from 1970
    (b"?time", "time", lambda: TICKS + ACS_EPOCH_TICKS, UNIX),  # ticks from 1582-10-15
    (b"?status", "status", lambda: ("1700000000.1234567", "ok", True), UNIX + ",ok,1"),
    (b"?status", "status", lambda: (WHEN, "ok", 0), "1700000000.1234560,ok,0"),
    (b"?status", "status", lambda: [acs_to_time(TICKS), "busy", np.bool_(True)],
     UNIX + ",busy,1"),
    # -- status word and acquiring flag -------------------------------------
    (b"?status", "status", lambda: (1.5, np.str_("ok"), False), "1.5000000,ok,0"),
    (b"?status", "status", lambda: (1.5, "clock-error", "1"), "1.5000000,clock-error,1"),
    (b"?status", "status", lambda: (1.5, "ok", np.int8(0)), "1.5000000,ok,0"),
    (b"?status", "status", lambda: (1.5, "ok", 1.0), "1.5000000,ok,1"),
    # -- per-section floats --------------------------------------------------
    (b"?get-tpi,0,0", "get_tpi", lambda: [903.21, 1240.57], "903.21,1240.57"),
    (b"?get-tpi,0,0", "get_tpi", lambda: (903.21, 1240.57), "903.21,1240.57"),
    (b"?get-tpi,0,0", "get_tpi", lambda: np.array([903.21, 1240.57]), "903.21,1240.57"),
    (b"?get-tpi,0,0", "get_tpi", lambda: np.array([2.2, 1.5], dtype=np.float32), "2.2,1.5"),
    (b"?get-tpi,0,0", "get_tpi", lambda: (x / 2 for x in (3.0, 5.0)), "1.5,2.5"),
    (b"?get-tpi,0,0", "get_tpi", lambda: array.array("d", [1.5, 2.5]), "1.5,2.5"),
    (b"?get-tpi,0,0", "get_tpi", lambda: array.array("f", [0.5]), "0.5"),
    (b"?get-tpi,0,0", "get_tpi", lambda: [np.float32(2.2), np.float16(0.5)], "2.2,0.5"),
    (b"?get-tpi,0,0", "get_tpi", lambda: [Decimal("1.25"), Fraction(1, 4), 3], "1.25,0.25,3.0"),
    (b"?get-tpi,0,0", "get_tpi", lambda: ["1.5", "1e+06", "40"], "1.5,1000000.0,40.0"),
    (b"?get-tpi,0,0", "get_tpi", lambda: np.float64(7.5), "7.5"),  # one value
    (b"?get-tpi,0,0", "get_tpi", lambda: np.array(7.5), "7.5"),  # a 0-D array: one value
    (b"?get-tp0,0,0", "get_tp0", lambda: range(3), "0.0,1.0,2.0"),
    (b"?get-rms", "get_rms", lambda: np.linspace(0.25, 0.5, 2), "0.25,0.5"),
    (b"?get-rms", "get_rms", lambda: [], ""),
    # -- integers and text -----------------------------------------------------
    (b"?get-integration", "get_integration", lambda: 40, "40"),
    (b"?get-integration", "get_integration", lambda: np.int32(40), "40"),
    (b"?get-integration", "get_integration", lambda: np.uint64(40), "40"),
    (b"?get-integration", "get_integration", lambda: 40.0, "40"),
    (b"?get-integration", "get_integration", lambda: "40", "40"),
    (b"?get-integration", "get_integration", lambda: Decimal("40"), "40"),
    (b"?get-integration", "get_integration", lambda: [40], "40"),
    (b"?get-configuration", "get_configuration", lambda: "SK77", "SK77"),
    (b"?get-configuration", "get_configuration", lambda: np.str_("SK00"), "SK00"),
    (b"?get-configuration", "get_configuration", lambda: ("XK77",), "XK77"),
    (b"?get-configuration", "get_configuration", lambda: "a,b", "a\\,b"),
]


@pytest.mark.parametrize("request_, method, value, values_text", ACCEPTED)
@pytest_twisted.inlineCallbacks
def test_a_value_a_backend_returns_is_written_exactly(connection, backend, request_, method,
                                                      value, values_text):
    reply = yield ask(connection, backend, method, value, request_)
    name = request_[1:].split(b",")[0]
    expected = b"!" + name + b",ok" + (b"," + values_text.encode() if values_text else b"")
    assert reply == expected


#: (request, method, what the method returns, the fail reason)
REFUSED = [
    (b"?status", "status", lambda: ("clock error", "ok", True),
     "status timestamp: expected unix seconds or astropy Time or datetime; got 'clock error'"),
    (b"?status", "status", lambda: (None, "ok", True),
     "status timestamp: expected unix seconds or astropy Time or datetime; got None"),
    (b"?status", "status", lambda: (float("nan"), "ok", True),
     "status timestamp: expected unix seconds or astropy Time or datetime; got nan"),
    (b"?status", "status", lambda: (-1.0, "ok", True),
     "status timestamp: expected unix seconds or astropy Time or datetime; got -1.0"),
    (b"?status", "status", lambda: (np.datetime64("NaT"), "ok", True),
     "status timestamp: expected unix seconds or astropy Time or datetime; "
     "got np.datetime64('NaT';'generic')"),
    (b"?status", "status", lambda: (1.5, None, True),
     "status status: expected a str of one word; got None"),
    (b"?status", "status", lambda: (1.5, "two words", True),
     "status status: expected a str of one word; got 'two words'"),
    (b"?status", "status", lambda: (1.5, "ok", 2), "status acquiring: expected a bool (or 1 "
     "or 0); got 2"),
    (b"?status", "status", lambda: (1.5, "ok", None), "status acquiring: expected a bool (or 1 "
     "or 0); got None"),
    (b"?get-configuration", "get_configuration", lambda: None,
     "backend returned 0 values for get-configuration: expected configuration"),
    (b"?get-configuration", "get_configuration", lambda: [None],
     "get-configuration configuration: expected a non-empty str; got None"),
    (b"?get-configuration", "get_configuration", lambda: [[1, 2]],
     "get-configuration configuration: expected a non-empty str; got [1; 2]"),
    (b"?get-configuration", "get_configuration", lambda: "SK\r\n00",
     "get-configuration configuration: expected a non-empty str; got 'SK\\r\\n00'"),
    (b"?get-configuration", "get_configuration", lambda: "\ud800",
     "get-configuration configuration: expected a non-empty str; got '\\ud800'"),
    (b"?get-tpi", "get_tpi", lambda: [1.0, float("inf")],
     "get-tpi value: expected a finite number; got inf"),
    (b"?get-tpi", "get_tpi", lambda: np.array([[1.0, 2.0], [3.0, 4.0]]),
     "get-tpi: expected values in one dimension; got a 2-D array"),
    (b"?get-tpi", "get_tpi", lambda: ["lots"], "get-tpi value: expected a finite number; "
     "got 'lots'"),
    (b"?get-integration", "get_integration", lambda: 40.5,
     "get-integration integration: expected an integer; got 40.5"),
]


@pytest.mark.parametrize("request_, method, value, reason", REFUSED)
@pytest_twisted.inlineCallbacks
def test_a_value_no_field_can_carry_is_refused_with_its_field(connection, backend, request_,
                                                              method, value, reason):
    reply = yield ask(connection, backend, method, value, request_)
    message = parse_line(reply)  # a reason holding a backslash travels escaped
    assert (message.name, message.code, message.arguments) == (
        request_[1:].split(b",")[0].decode(), "fail", [reason])


@pytest_twisted.inlineCallbacks
def test_a_refused_value_is_logged_with_the_backend_method_and_the_value(connection, backend):
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        reply = yield ask(connection, backend, "status", lambda: ("clock error", "ok", 1),
                          b"?status")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert reply.startswith(b"!status,fail,status timestamp: expected")
    errors = [event for event in events if event.get("log_level") == LogLevel.error]
    assert len(errors) == 1
    assert errors[0]["method"] == "status"
    assert errors[0]["result"] == ("clock error", "ok", 1)
