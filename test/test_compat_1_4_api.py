"""The discos-backend 1.4 compatibility contract.

Everything below is written only with the Python API of discos-backend 1.4,
the way code written for it does things: messages built and then filled in,
``check_synthax()``, the ``timediscos`` helpers, ``Time(ticks,
format="discos")``, a handler of its own served by ``server.run_server``.
If one of these tests has to change, code in the field breaks: don't.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

from astropy.time import Time

from discosbackend import grammar, timediscos
from discosbackend.handlers import (AlwaysFailHandler, AlwaysOkHandler, DBProtocolHandler,
                                    Handler, HandlerException)

TICKS = 14_309_227_829_708_830  # unix 1430922782.9708830


# -- grammar --------------------------------------------------------------------

def test_a_reply_is_built_then_given_its_code_and_arguments():
    request = grammar.parse_message("?get-tpi,0,0\r\n")
    reply = grammar.Message(message_type=grammar.REPLY, name=request.name)
    reply.arguments = [str(value) for value in (903.21, 1240.57)]
    reply.code = grammar.OK
    assert reply.check_synthax() is True
    assert reply.is_correct_reply(request)
    assert str(reply) == "!get-tpi,ok,903.21,1240.57"


def test_attributes_are_read_and_written():
    message = grammar.Message(message_type=grammar.REQUEST, name="status")
    assert (message.message_type, message.name, message.arguments) == ("?", "status", [])
    assert message.is_request() and not message.is_reply()
    message.name = "time"
    message.arguments.append("now")
    assert str(message) == "?time,now"


def test_check_synthax_raises_for_a_message_that_cannot_be_written():
    reply = grammar.Message(message_type=grammar.REPLY, name="status")
    try:
        reply.check_synthax()
    except grammar.GrammarException:
        pass
    else:
        raise AssertionError("a reply without a code passed check_synthax()")
    reply.code = grammar.FAIL
    reply.arguments = ["hardware error"]
    assert reply.check_synthax() is True


def test_the_patterns_match_lines():
    request = grammar.request_pattern.match("?set-section,0,100,1500,0,0,3000,1024\r\n")
    assert request.groupdict()["name"] == "set-section"
    assert request.groupdict()["arguments"].split(",")[0] == "0"
    reply = grammar.reply_pattern.match("!status,ok,1430922782.9708830,ok,0")
    assert (reply.groupdict()["code"], reply.groupdict()["arguments"]) == (
        grammar.OK, "1430922782.9708830,ok,0")
    assert grammar.request_pattern.match("!status,ok") is None
    assert grammar.reply_pattern.match("!status,maybe") is None
    assert {grammar.OK, grammar.FAIL, grammar.INVALID} == {"ok", "fail", "invalid"}


# -- timediscos -----------------------------------------------------------------

def test_timediscos_helpers():
    assert timediscos.CENTINANOSECONDS == 10_000_000
    parsed = timediscos.parse_unix_time("1430922782.9708830")
    assert isinstance(parsed, Time)
    assert parsed.discos == TICKS
    assert timediscos.unix_to_acs_time(1430922782.5).discos == 14_309_227_825_000_000
    now = timediscos.get_acs_now()
    assert abs(now.unix - time.time()) < 5


def test_time_in_the_discos_format_from_present_day_numbers():
    # astropy hands the format a float64: exact to the float's precision.
    from_int = Time(TICKS, format="discos")
    from_float = Time(time.time() * timediscos.CENTINANOSECONDS, format="discos")
    assert abs(from_int.discos - TICKS) <= 2
    assert abs(from_float.unix - time.time()) < 5
    assert abs(from_int.unix - 1430922782.970883) < 1e-6


# -- handlers and the server ----------------------------------------------------------

class EchoHandler(Handler):
    """A 1.4-style handler: builds its replies as 1.4's own handler did."""

    def handle(self, message):
        if message.name == "refuse":
            raise HandlerException("refused")
        reply = grammar.Message(message_type=grammar.REPLY, name=message.name)
        reply.arguments = [argument.upper() for argument in message.arguments]
        reply.code = grammar.OK
        return reply


def test_a_handler_builds_its_replies_the_1_4_way():
    reply = EchoHandler().handle(grammar.parse_message("?shout,a,b"))
    assert str(reply) == "!shout,ok,A,B"
    assert str(AlwaysOkHandler().handle(grammar.parse_message("?x,1"))) == "!x,ok,1"
    assert str(AlwaysFailHandler().handle(grammar.parse_message("?x"))).startswith("!x,fail")


class OldBackend:  # pylint: disable=too-few-public-methods
    """A backend as 1.4 code wrote them: a plain class, get_tpi without arguments."""

    def status(self):
        return (timediscos.get_acs_now(), "ok", 0)

    def get_tpi(self):
        return [1.5, 2.5]


SERVE = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from discosbackend import server
    from test_compat_1_4_api import EchoHandler
    server.run_server(int(sys.argv[1]), EchoHandler())
""")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _connect(port: int) -> socket.socket:
    deadline = time.monotonic() + 20
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the server process is still starting


def test_run_server_serves_a_1_4_handler_over_a_socket():
    port = _free_port()
    here = str(__import__("pathlib").Path(__file__).parent)
    with subprocess.Popen([sys.executable, "-c", SERVE, str(port), here]) as process:
        try:
            with _connect(port) as connection:
                stream = connection.makefile("rb")
                # The greeting is the handler's own reply to ?version.
                assert stream.readline() == b"!version,ok\r\n"
                for request, reply in [(b"?shout,a,b", b"!shout,ok,A,B"),
                                       (b"?refuse", b"!refuse,fail,refused")]:
                    connection.sendall(request + b"\r\n")
                    assert stream.readline() == reply + b"\r\n"
        finally:
            process.terminate()
            process.wait(20)


def test_a_1_4_backend_is_served_by_dbprotocolhandler():
    handler = DBProtocolHandler(OldBackend())
    assert handler.handle(grammar.parse_message("?get-tpi,0,0")) == b"!get-tpi,ok,1.5,2.5\r\n"
    status = handler.handle(grammar.parse_message("?status"))
    assert status.startswith(b"!status,ok,") and status.endswith(b",ok,0\r\n")
