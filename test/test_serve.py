"""``discos-backend serve`` end to end: the simulator on a real loopback socket.

One simulator server (started through ``scripts/run_simulator_server.py``,
which runs the same code as ``discos-backend serve``) carries a full
observing session and every fault kind, set through its control endpoint.
Bad command lines are run as subprocesses, concurrently, and must exit with
one line on stderr.  The command line's pieces are also tested in-process
on a ``MemoryReactor``.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from _helpers_simulator import ROOT, LineClient, ServeProcess, Wire, run_serve, start_serve
from discosbackend.backend import Backend
from discosbackend.cli import CommandLineError, build_parser, main
from discosbackend.cli import serve as serve_module
from discosbackend.configurations import load, srt
from discosbackend.faults import GARBAGE, ControlHandler
from discosbackend.grammar import parse_message
from discosbackend.errors import OpenError
from discosbackend.handlers import AlwaysOkHandler, DBProtocolHandler
from discosbackend.simulator import BackendSimulator, SimulatorHandler
from discosbackend.testing.checks import SARDARA_SESSION, SKARAB_SESSION

TIMEOUT = 0.5  # the served simulator's per-request timeout, seconds


# -- the served simulator --------------------------------------------------


@pytest.fixture(name="served", scope="module")
def fixture_served() -> Iterator[ServeProcess]:
    script = ROOT / "scripts" / "run_simulator_server.py"
    server = start_serve([], command=[sys.executable, str(script), "--port", "0",
                                      "--timeout", str(TIMEOUT), "--sections", "2"])
    yield server
    status, err = server.terminate()
    assert status == 0, err
    assert "Traceback" not in err


@pytest.fixture(name="public")
def fixture_public(served: ServeProcess) -> Iterator[LineClient]:
    with LineClient(served.port) as client:
        yield client
    # leave the simulator as found: no faults, not acquiring
    assert control(served, "?clear") == "!clear,ok"
    with LineClient(served.port) as client:
        client.ask("?stop")


def control(served: ServeProcess, *lines: str) -> str:
    """Send ``lines`` to the control endpoint; return the last reply."""
    assert served.control_port is not None
    with LineClient(served.control_port) as client:
        assert client.greeting == "!version,ok,1.4"
        replies = [client.ask(line) for line in lines]
    return replies[-1]


def floats(reply: str) -> list[float]:
    message = parse_message(reply)
    assert message.code == "ok", reply
    return [float(value) for value in message.arguments]


def wait_status(client: LineClient, acquiring: str, limit: float = 5.0) -> str:
    """Poll ``?status`` until its acquiring flag is ``acquiring`` (bounded)."""
    deadline = time.monotonic() + limit
    while True:
        reply = client.ask("?status")
        if reply.endswith("," + acquiring) or time.monotonic() > deadline:
            return reply
        time.sleep(0.02)


def test_serving_line(served: ServeProcess) -> None:
    assert served.what == "BackendSimulator (2 sections, 20 configurations)"
    assert served.line.startswith("discos-backend: serving BackendSimulator (2 sections, "
                                  "20 configurations) on "
                                  f"tcp:127.0.0.1:{served.port}; control on tcp:127.0.0.1:")
    assert served.control_port not in (None, served.port)


def test_full_observing_session(public: LineClient) -> None:
    ask = public.ask
    assert public.greeting == "!version,ok,1.4"
    assert ask("?get-configuration") == "!get-configuration,ok,unconfigured"
    assert ask("?set-configuration,SK00") == "!set-configuration,ok"
    assert ask("?get-configuration") == "!get-configuration,ok,SK00"
    assert ask("?set-integration,40") == "!set-integration,ok"
    assert ask("?get-integration") == "!get-integration,ok,40"
    assert ask("?set-section,0,100,1500,0,0,3000,1024") == "!set-section,ok"
    assert ask("?set-section,1,50.0,200.0,1,CP,10,2048") == "!set-section,ok"
    assert ask("?set-section,1,*,*,*,*,*,*") == "!set-section,ok"
    assert ask("?set-section,0,100,5000,0,0,3000,1024") == (
        "!set-section,fail,bandwidth 5000 out of range 1..2300 MHz")
    assert ask("?set-enable,0,1") == "!set-enable,ok"
    assert len(floats(ask("?get-tpi,0,0"))) == 4  # nodding: 2 feeds x 2 polarizations
    assert ask("?set-enable,7,7") == "!set-enable,ok"  # all feeds again
    assert ask("?set-shift,3") == "!set-shift,ok"
    off = floats(ask("?get-tpi,0,0"))
    assert ask("?cal-on,10") == "!cal-on,ok"
    on = floats(ask("?get-tpi,0,0"))
    assert len(off) == len(on) == 2
    assert all(b > 1.05 * a for a, b in zip(off, on))  # the mark raises the level
    assert off[0] > 5 * off[1]  # 1500 MHz against 200 MHz
    zero = floats(ask("?get-tp0,0,0"))
    assert len(zero) == 2 and all(0 <= z < 0.01 * t for z, t in zip(zero, off))
    assert len(floats(ask("?get-rms"))) == 2
    assert ask("?cal-on") == "!cal-on,ok"
    assert parse_message(ask("?status")).arguments[1:] == ["ok", "0"]

    # time-tagged start (unix seconds) and stop (ACS ticks), on the server's clock
    now = float(parse_message(ask("?time")).arguments[0])
    assert ask(f"?start,{now + 0.3:.7f}") == "!start,ok"
    assert ask(f"?stop,{int((now + 0.6) * 10**7)}") == "!stop,ok"
    assert ask("?status").endswith(",ok,0")  # nothing yet: it is pending
    assert wait_status(public, "1").endswith(",ok,1")
    assert ask("?set-section,0,100,1500,0,0,3000,1024").startswith(
        "!set-section,fail,busy acquiring")
    assert wait_status(public, "0").endswith(",ok,0")
    stamp = float(parse_message(ask("?status")).arguments[0])
    assert stamp >= now + 0.6
    assert ask("?set-filename,/archive/data/20250110/20250110-101012-P-Src_001_001.fits") == (
        "!set-filename,ok")
    assert ask("?stop") == "!stop,fail,not acquiring"

    # immediate start and stop, then the end of the schedule
    assert ask("?start") == "!start,ok"
    assert ask("?start") == "!start,fail,already acquiring"
    assert ask("?stop") == "!stop,ok"
    assert ask("?set-filename,/archive/data/scan2.fits") == "!set-filename,ok"
    assert ask("?convert-data") == "!convert-data,ok"
    assert ask("?end-schedule") == "!end-schedule,ok"
    assert ask("?backend-park") == "!backend-park,ok"
    assert ask("?nosuch") == "!nosuch,invalid,unknown command 'nosuch'"


#: The number of values the real client reads at each get-tpi/get-rms of its
#: sessions: SK77 has 14 inputs, Sardara nodding 4 (even on one feed twice);
#: SKARAB_1 has 2, SKARAB nodding 4 on two feeds and 2 on one.
SESSIONS = {
    "Sardara": (SARDARA_SESSION, [14, 14, 14, 14, 4, 4, 4, 4, 4, 4, 4, 4]),
    "SKARAB": (SKARAB_SESSION, [2, 2, 2, 2, 2, 4, 4, 2, 2, 2]),
}


@pytest.mark.parametrize("who", list(SESSIONS))
def test_the_real_clients_sessions_get_ok_and_the_counts_they_read(
        public: LineClient, who: str) -> None:
    steps, counts = SESSIONS[who]
    read = []
    acquiring = False
    for name, *arguments in steps:
        line = "?" + ",".join([name, *arguments])
        reply = public.ask(line)
        message = parse_message(reply)
        assert (message.name, message.code) == (name, "ok"), (line, reply)
        assert len(reply) + 2 < 512, reply
        acquiring = {"start": True, "stop": False, "backend-park": False}.get(name, acquiring)
        if name == "status":
            assert message.arguments[2] == str(int(acquiring)), line
        if name in ("get-tpi", "get-rms"):
            assert all(value > 0 for value in floats(reply)), reply
            read.append(len(message.arguments))
    assert read == counts
    assert public.ask("?set-configuration,SK00") == "!set-configuration,ok"


SITE_TABLE = """
[families]
Site = { nodding = "distinct-feeds" }

[configurations]
XK44 = { family = "Site", bandwidth = [250, 500, 250, 500], bins = 2048, feeds = [0, 0, 3, 3], polarizations = ["L", "R", "L", "R"] }
"""
SITE_SESSION = ["?get-tpi,0,0", "?set-configuration,XK44", "?set-integration,40", "?get-tpi,0,0",
                "?cal-on,5", "?get-tpi,0,0", "?get-rms", "?get-tp0,0,0", "?set-enable,3,3",
                "?get-tpi,0,0", "?get-rms"]


def test_serve_a_site_table_with_a_seed(tmp_path: Path) -> None:
    """--configurations and --seed reach the simulator: its values are those of the seed."""
    table = tmp_path / "site.toml"
    table.write_text(SITE_TABLE, encoding="utf-8")
    server = start_serve(["--port", "0", "--control-port", "none", "--seed", "7",
                          "--configurations", str(table)])
    try:
        assert server.what == "BackendSimulator (2 sections, 1 configuration)"
        with LineClient(server.port) as client:
            assert client.ask("?set-configuration,SK77") == (
                "!set-configuration,fail,configuration 'SK77' unknown: use XK44")
            replies = [client.ask(line) for line in SITE_SESSION]
    finally:
        status, err = server.terminate()
    assert status == 0, err
    # the same requests to a simulator with the same seed and table, in process
    wire = Wire(BackendSimulator(seed=7, configurations=load(str(table))))
    assert replies == [wire.ask(line) for line in SITE_SESSION]
    assert [len(parse_message(reply).arguments) for reply in replies] == [
        2, 0, 0, 4, 0, 4, 4, 4, 0, 2, 2]
    other = Wire(BackendSimulator(seed=8, configurations=load(str(table))))
    assert replies != [other.ask(line) for line in SITE_SESSION]


def test_a_site_table_beyond_the_simulator_limits(tmp_path: Path) -> None:
    table = tmp_path / "wide.toml"
    table.write_text(SITE_TABLE.replace("500", "5000"), encoding="utf-8")
    with pytest.raises(CommandLineError, match="^--configurations: configuration XK44: "
                                               "bandwidth 5000 out of range 1..2300 MHz$"):
        serve_module.build(parse("--configurations", str(table)))
    table.write_text("[families\n", encoding="utf-8")
    with pytest.raises(CommandLineError, match=f"^--configurations: {table}: .* line 1"):
        serve_module.build(parse("--configurations", str(table)))


def test_control_commands_not_on_public_port(public: LineClient) -> None:
    assert public.ask("?fail,start,hardware-error") == "!fail,invalid,unknown command 'fail'"
    assert public.ask("?clear") == "!clear,invalid,unknown command 'clear'"
    assert public.ask("?start") == "!start,ok"


def test_fault_fail(served: ServeProcess, public: LineClient) -> None:
    assert control(served, "?fail,start,hardware-error") == "!fail,ok"
    assert public.ask("?start") == "!start,fail,hardware-error"
    assert public.ask("?start") == "!start,fail,hardware-error"  # until cleared
    assert public.ask("?status").endswith(",ok,0")
    assert control(served, "?clear") == "!clear,ok"
    assert public.ask("?start") == "!start,ok"


def test_fault_delay(served: ServeProcess, public: LineClient) -> None:
    assert control(served, "?delay,get-tpi,0.3") == "!delay,ok"
    public.send("?get-tpi,0,0")
    began = time.monotonic()
    with LineClient(served.port) as other:  # others are served meanwhile
        assert other.ask("?get-integration").startswith("!get-integration,ok,")
        assert time.monotonic() - began < 0.25
    assert public.read_line().startswith("!get-tpi,ok,")
    assert time.monotonic() - began >= 0.25
    # longer than the server's own timeout
    assert control(served, "?delay,get-tpi,30") == "!delay,ok"
    assert public.ask("?get-tpi") == f"!get-tpi,fail,timeout after {TIMEOUT:g} s"


def test_fault_status_word(served: ServeProcess, public: LineClient) -> None:
    assert control(served, "?status-word,clock-error") == "!status-word,ok"
    assert parse_message(public.ask("?status")).arguments[1:] == ["clock-error", "0"]
    assert control(served, "?status-word,ok") == "!status-word,ok"
    assert parse_message(public.ask("?status")).arguments[1:] == ["ok", "0"]


def test_fault_garbage(served: ServeProcess, public: LineClient) -> None:
    assert control(served, "?garbage") == "!garbage,ok"
    assert public.ask("?status") + "\r\n" == GARBAGE.decode()
    assert public.ask("?status").startswith("!status,ok,")  # once only


def test_fault_disconnect(served: ServeProcess, public: LineClient) -> None:
    assert control(served, "?disconnect") == "!disconnect,ok"
    assert public.ask("?get-integration").startswith("!get-integration,ok,")
    assert public.read_line() == ""  # then the connection is closed
    with LineClient(served.port) as again:  # once only
        assert again.ask("?get-integration").startswith("!get-integration,ok,")
        assert again.ask("?get-integration").startswith("!get-integration,ok,")


def test_fault_list_and_clear(served: ServeProcess, public: LineClient) -> None:
    assert control(served, "?fail,*,hardware-down", "?delay,time,0.1", "?garbage",
                   "?faults") == ("!faults,ok,fail:*:hardware-down,delay:time:0.1,garbage")
    assert control(served, "?clear", "?faults") == "!faults,ok"
    assert public.ask("?time").startswith("!time,ok,")


def test_control_refuses_bad_requests(served: ServeProcess) -> None:
    assert control(served, "?fail,nosuch,x") == "!fail,fail,unknown command 'nosuch'"
    assert control(served, "?delay,get-tpi,soon") == (
        "!delay,fail,invalid seconds 'soon': expected a finite number")
    assert control(served, "?status").startswith("!status,invalid,unknown command 'status'")
    assert control(served, "!fail,ok").startswith("!fail,invalid,requests must start")
    assert control(served, "?faults") == "!faults,ok"


# -- your own backend, and SIGTERM ------------------------------------------


def test_serve_own_backend_and_sigterm() -> None:
    server = start_serve(["--backend", "run_server:MyBackend", "--port", "0", "-v"],
                         cwd=ROOT / "scripts")
    try:
        assert server.what == "MyBackend" and server.control_port is None
        with LineClient(server.port) as client:
            assert client.ask("?get-tpi,0,0") == "!get-tpi,ok,812.5,790.25"
            assert client.ask("?get-rms") == "!get-rms,fail,not supported: get-rms"
            assert client.ask("?set-integration,20000") == (
                "!set-integration,fail,integration 20000 too long: max 10000 ms")
            assert client.ask("?start") == "!start,ok"
            status, err = server.terminate()
            assert client.read_line() == ""  # closed by the server on its way out
    finally:
        server.terminate()
    assert status == 0, err
    assert "Traceback" not in err
    assert "Received SIGTERM" in err
    assert " ?get-tpi,0,0 -> !get-tpi,ok,812.5,790.25 (" in err  # -v logs exchanges


def test_json_log_file_has_every_exchange_with_peer_and_duration(tmp_path: Path) -> None:
    log = tmp_path / "serve.jsonl"
    log.write_text("kept\n")  # appended to, not replaced
    server = start_serve(["--backend", "serving:TestsBackend", "--port", "0", "-v",
                          "--timeout", "0.2", "--log-file", str(log), "--log-format", "json"],
                         cwd=ROOT / "test")
    try:
        with LineClient(server.port) as client:
            peer = "%s:%d" % client.socket.getsockname()
            asked = ["?get-rms", "?set-configuration,bad", "?nope", "hello", "?slow,1"]
            replies = [client.ask(line) for line in asked]
    finally:
        status, err = server.terminate()
    assert status == 0 and err == "", err  # everything went to the file
    assert replies[-1] == "!slow,fail,timeout after 0.2 s"
    lines = log.read_text().splitlines()
    assert lines[0] == "kept"
    records = [json.loads(line) for line in lines[1:]]
    assert all({"time", "level", "namespace", "message"} <= set(record) for record in records)
    assert all(record["time"].endswith("Z") for record in records)
    exchanges = [record for record in records if "duration_ms" in record]
    assert [(r["peer"], r["request"], r["reply"], r["level"]) for r in exchanges] == [
        (peer, line, reply, "debug") for line, reply in zip(asked, replies)]
    assert all(r["duration_ms"] >= 0 for r in exchanges)
    assert 150 < exchanges[-1]["duration_ms"] < 5000  # the timeout, measured from arrival
    assert any(r["level"] == "warn" and r["message"].startswith("no reply to ?slow,1 within")
               for r in records)
    connections = [r["message"] for r in records if r.get("peer") == peer
                   and "duration_ms" not in r]
    assert connections == [f"connection from {peer}", f"connection from {peer} closed"]


# -- bad command lines -------------------------------------------------------


@pytest.fixture(name="busy_port", scope="module")
def fixture_busy_port() -> Iterator[int]:
    """A loopback port something listens on, the port before it free (for the control clash)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            with socket.socket() as before:
                try:
                    before.bind(("127.0.0.1", port - 1))
                except OSError:
                    continue
            sock.listen()
            yield port
            return
    raise RuntimeError("no free pair of ports")  # pragma: no cover


BAD = {
    "unknown module": (["--backend", "nosuchmodule:Backend"],
                       "--backend 'nosuchmodule:Backend': no module named 'nosuchmodule'"),
    "not a backend": (["--backend", "discosbackend.grammar:Message"],
                      "--backend 'discosbackend.grammar:Message': not a backend (no command "
                      "methods; subclass discosbackend.backend.Backend)"),
    "port in use": (["--port", "{busy}"],
                    "cannot listen on tcp:{busy}:interface=127.0.0.1: Address already in use"),
    "control port in use": (["--port", "{before_busy}"],
                            "cannot listen on the control port tcp:{busy}:interface=127.0.0.1 "
                            "(the public port + 1): Address already in use; choose another "
                            "with --control-port N, or none to turn it off"),

    "bad endpoint": (["--endpoint", "nosuch:thing"],
                     "bad endpoint 'nosuch:thing': "),
    "open fails": (["--backend", "sleepy_backends:make_backend", "-o", "host=10.0.0.5",
                    "-o", "fail_open=true", "--port", "0"],
                   "SleepyBackend.open() failed: ConnectionRefusedError: no spectrometer at "
                   "10.0.0.5:7000"),
    "open fails, threaded": (["--backend", "sleepy_backends:SleepyBackend", "-o",
                              "fail_open=true", "--threaded", "--port", "0"],
                             "SleepyBackend.open() failed: ConnectionRefusedError: no "
                             "spectrometer at 127.0.0.1:7000"),
    "factory needs an option": (["--backend", "sleepy_backends:make_backend"],
                                "make_backend needs -o host=VALUE"),
}


@pytest.fixture(name="bad_runs", scope="module")
def fixture_bad_runs(busy_port: int) -> dict[str, tuple[int, str, str]]:
    """Run every bad command line at once; their exit status, stdout, stderr."""
    processes = {name: run_serve([a.format(busy=busy_port, before_busy=busy_port - 1)
                                  for a in arguments],
                                 cwd=ROOT / "test")  # where sleepy_backends is
                 for name, (arguments, _) in BAD.items()}
    results = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=60)
        results[name] = (process.returncode, out.decode(), err.decode())
    return results


@pytest.mark.parametrize("name", list(BAD))
def test_bad_command_line(name: str, bad_runs: dict, busy_port: int) -> None:
    status, out, err = bad_runs[name]
    expected = "discos-backend serve: " + BAD[name][1].format(busy=busy_port)
    assert status == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith(expected), err
    if name != "bad endpoint":  # Twisted words the rest of that one
        assert err == expected + "\n"


# -- in-process: arguments, backends, addresses ------------------------------


def parse(*arguments: str) -> Any:
    return build_parser().parse_args(["serve", *arguments])


def test_build_defaults() -> None:
    setup = serve_module.build(parse())
    assert isinstance(setup.backend, BackendSimulator)
    assert setup.backend.section_count == 2
    assert isinstance(setup.handler, SimulatorHandler)
    assert isinstance(setup.control_handler, ControlHandler)
    assert setup.control_handler.faults is setup.backend.faults
    assert setup.public == "tcp:8978:interface=127.0.0.1"
    assert setup.control == "tcp:8979:interface=127.0.0.1"
    assert setup.timeout == serve_module.DEFAULT_TIMEOUT == 60 and not setup.verbose
    assert not setup.handler.threaded and setup.handler.worker is None
    assert setup.describe() == "BackendSimulator (2 sections, 20 configurations)"
    assert setup.backend.configurations is srt()


@pytest.mark.parametrize("arguments, public, control_endpoint", [
    (["--port", "0"], "tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1"),
    (["--port", "9000", "--interface", "0.0.0.0"], "tcp:9000:interface=0.0.0.0",
     "tcp:9001:interface=127.0.0.1"),
    (["--control-port", "none"], "tcp:8978:interface=127.0.0.1", None),
    (["--control-port", "OFF"], "tcp:8978:interface=127.0.0.1", None),
    (["--control-port", "7000", "--control-interface", "::1"], "tcp:8978:interface=127.0.0.1",
     "tcp:7000:interface=\\:\\:1"),
    (["--endpoint", "tcp:5000:interface=0.0.0.0"], "tcp:5000:interface=0.0.0.0",
     "tcp:5001:interface=127.0.0.1"),
    (["--endpoint", "tcp6:port=6000"], "tcp6:port=6000", "tcp:6001:interface=127.0.0.1"),
    (["--endpoint", "unix:/tmp/backend.sock"], "unix:/tmp/backend.sock", None),
    (["--endpoint", "unix:/tmp/b.sock", "--control-port", "0"], "unix:/tmp/b.sock",
     "tcp:0:interface=127.0.0.1"),
])
def test_build_endpoints(arguments: list[str], public: str, control_endpoint: str | None) -> None:
    setup = serve_module.build(parse(*arguments))
    assert setup.public == public
    assert setup.control == control_endpoint
    assert (setup.control_handler is None) == (control_endpoint is None)


def test_build_protocol_version_and_get_rms() -> None:
    setup = serve_module.build(parse("--protocol", "1.2", "--no-get-rms"))
    assert isinstance(setup.handler, SimulatorHandler)
    assert setup.handler.protocol == "1.2"
    assert "set-enable" not in setup.handler.commands and "get-rms" not in setup.handler.commands
    assert setup.describe() == "BackendSimulator (2 sections, 20 configurations) speaking protocol 1.2 without get-rms"
    plain = serve_module.build(parse("--backend", f"{__name__}:Plain", "--protocol", "1.3"))
    assert plain.handler.protocol == "1.3" and "get-rms" in plain.handler.commands
    assert plain.describe() == "Plain speaking protocol 1.3"


def test_serve_speaks_the_protocol_it_is_told() -> None:
    served = start_serve(["--port", "0", "--control-port", "none", "--protocol", "1.2"])
    try:
        assert served.what == "BackendSimulator (2 sections, 20 configurations) speaking protocol 1.2"
        with LineClient(served.port) as client:
            assert client.greeting == "!version,ok,1.2"
            assert client.ask("?version") == "!version,ok,1.2"
            assert client.ask("?set-enable,0,0") == "!set-enable,invalid,unknown command 'set-enable'"
            assert client.ask("?convert-data") == "!convert-data,ok"
            assert client.ask("?get-rms").startswith("!get-rms,ok,")
    finally:
        status, err = served.terminate()
    assert status == 0, err


def test_build_options() -> None:
    setup = serve_module.build(parse("--sections", "4", "--timeout", "2.5", "--max-line", "100",
                                     "-v", "--threaded", "-o", "seed=3"))
    assert setup.backend.section_count == 4
    assert setup.timeout == 2.5 and setup.max_line == 100 and setup.verbose
    assert setup.handler.threaded and setup.handler.worker is not None
    assert setup.describe() == "BackendSimulator (4 sections, 20 configurations) (threaded)"
    assert serve_module.build(parse("--timeout", "0")).timeout is None  # no limit


@pytest.mark.parametrize("arguments", [
    ["--sections", "0"], ["--sections", "x"], ["--timeout", "-1"], ["--timeout", "inf"],
    ["--timeout", "nan"], ["--timeout", "x"], ["--port", "70000"], ["--port", "x"],
    ["--control-port", "x"], ["--max-line", "0"], ["-o", "host"], ["-o", "=1"],
    ["-o", "not a name=1"], ["--backend-option", "1x=2"], ["--protocol", "2.0"],
    ["--protocol", "1.4.1"],
])
def test_bad_arguments_refused_by_the_parser(arguments: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*arguments)


class Plain:
    """A backend not derived from Backend (the old API)."""

    def get_tpi(self) -> list[float]:
        return [1.0]


class NeedsArguments(Backend):
    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device


class Broken(Backend):
    def __init__(self) -> None:
        raise RuntimeError("no hardware")


class SmallSimulator(BackendSimulator):
    BANDWIDTH_RANGE = (1.0, 2000.0)


def make_plain(scale: float = 1.0, *, label: str = "x") -> Plain:
    """A factory with options."""
    made = Plain()
    made.scale, made.label = scale, label  # type: ignore[attr-defined]
    return made


def make_nothing() -> int:
    return 5


PLAIN = Plain()
SERVED_HANDLER = AlwaysOkHandler()
THREADED_HANDLER = DBProtocolHandler(Backend(), threaded=True)


@pytest.mark.parametrize("spec, message", [
    ("nocolon", "use module:NAME"),
    ("discosbackend.simulator:", "use module:NAME"),
    ("discosbackend.simulator:Nope", "'discosbackend.simulator' has no attribute 'Nope'"),
    ("discosbackend.server:DEFAULT_PORT", "not a backend class, factory or handler"),
    ("discosbackend.grammar:Message", "not a backend"),
    ("nosuchmodule.inner:X", "no module named 'nosuchmodule'"),
])
def test_load_backend_refuses(spec: str, message: str) -> None:
    with pytest.raises(CommandLineError, match=message):
        serve_module.load_backend(spec)


def test_load_backend_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "brokenbackend.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CommandLineError,
                       match="cannot import 'brokenbackend': RuntimeError: boom"):
        serve_module.load_backend("brokenbackend:X")


def test_load_backend_accepts() -> None:
    assert serve_module.load_backend("discosbackend.simulator:BackendSimulator") \
        is BackendSimulator
    assert serve_module.load_backend(f"{__name__}:Plain") is Plain
    assert serve_module.load_backend("discosbackend.backend:Backend") is Backend
    assert serve_module.load_backend(f"{__name__}:make_plain") is make_plain
    assert serve_module.load_backend(f"{__name__}:PLAIN") is PLAIN
    assert serve_module.load_backend(f"{__name__}:SERVED_HANDLER") is SERVED_HANDLER
    assert serve_module.load_backend("discosbackend.handlers:AlwaysOkHandler") \
        is AlwaysOkHandler


@pytest.mark.parametrize("text, key, value", [
    ("host=10.0.0.5", "host", "10.0.0.5"), ("port=7000", "port", 7000),
    ("offset=-3", "offset", -3), ("gain=0.5", "gain", 0.5), ("gain=1.5e3", "gain", 1500.0),
    ("gain=.5", "gain", 0.5), ("simulate=true", "simulate", True),
    ("simulate=FALSE", "simulate", False), ("serial=007", "serial", "007"),
    ("configuration=SK00", "configuration", "SK00"), ("empty=", "empty", ""),
    ("path=/a=b", "path", "/a=b"), ("word=nan", "word", "nan"), ("big=1e3", "big", "1e3"),
])
def test_backend_option_values(text: str, key: str, value: Any) -> None:
    parsed = serve_module.backend_option(text)
    assert parsed == (key, value) and type(parsed[1]) is type(value)


def test_build_a_factory_with_options() -> None:
    setup = serve_module.build(parse("--backend", f"{__name__}:make_plain", "-o", "scale=2",
                                     "-o", "label=SK00"))
    assert isinstance(setup.backend, Plain) and type(setup.handler) is DBProtocolHandler
    assert (setup.backend.scale, setup.backend.label) == (2, "SK00")
    setup = serve_module.build(parse("--backend", f"{__name__}:NeedsArguments", "-o",
                                     "device=/dev/ttyUSB0", "--threaded"))
    assert setup.backend.device == "/dev/ttyUSB0" and setup.handler.threaded
    assert setup.describe() == "NeedsArguments (threaded)"


def test_build_serves_a_handler_as_it_is() -> None:
    setup = serve_module.build(parse("--backend", f"{__name__}:SERVED_HANDLER"))
    assert setup.handler is SERVED_HANDLER and setup.backend is None
    assert setup.describe() == "AlwaysOkHandler" and setup.control is None
    setup = serve_module.build(parse("--backend", "discosbackend.handlers:AlwaysFailHandler"))
    assert type(setup.handler).__name__ == "AlwaysFailHandler"
    setup = serve_module.build(parse("--backend", f"{__name__}:THREADED_HANDLER",
                                     "--threaded"))
    assert setup.handler is THREADED_HANDLER and setup.describe() == "Backend (threaded)"


def make_simulator_handler() -> SimulatorHandler:
    return SimulatorHandler(BackendSimulator(sections=3))


def test_build_a_simulator_handler_from_a_factory_keeps_its_control_port() -> None:
    setup = serve_module.build(parse("--backend", f"{__name__}:make_simulator_handler"))
    assert setup.control_handler is not None
    assert setup.control_handler.faults is setup.handler.faults
    assert setup.describe() == "BackendSimulator (3 sections, 20 configurations)"


def test_build_own_backends() -> None:
    setup = serve_module.build(parse("--backend", f"{__name__}:Plain"))
    assert isinstance(setup.backend, Plain) and type(setup.handler) is DBProtocolHandler
    assert setup.control is None and setup.control_handler is None
    assert setup.describe() == "Plain"
    setup = serve_module.build(parse("--backend", f"{__name__}:NeedsArguments", "-o",
                                     "device=/dev/x"))
    assert setup.backend.device == "/dev/x"
    setup = serve_module.build(parse("--backend", f"{__name__}:SmallSimulator", "--sections",
                                     "3"))
    assert isinstance(setup.handler, SimulatorHandler) and setup.backend.section_count == 3
    assert setup.control is not None


@pytest.mark.parametrize("arguments, message", [
    (["--backend", f"{__name__}:Plain", "--sections", "2"],
     "--sections applies to the simulator only"),
    (["--backend", f"{__name__}:Plain", "--control-port", "9000"],
     "--control-port applies to the simulator only"),
    (["--backend", f"{__name__}:NeedsArguments"], "NeedsArguments needs -o device=VALUE"),
    (["--backend", f"{__name__}:Broken"], "cannot create Broken: RuntimeError: no hardware"),
    (["--backend", f"{__name__}:make_plain", "-o", "sacle=2"],
     r"-o sacle: make_plain takes no option 'sacle' \(it takes scale, label\)"),
    (["--backend", f"{__name__}:Broken", "-o", "x=1"],
     r"-o x: Broken takes no option 'x' \(it takes none\)"),
    (["--backend", f"{__name__}:make_plain", "-o", "scale=1", "-o", "scale=2"],
     "-o: each KEY once"),
    (["--backend", f"{__name__}:make_nothing"],
     f"--backend '{__name__}:make_nothing' made int, not a backend"),
    (["--backend", f"{__name__}:PLAIN", "-o", "scale=2"],
     "-o applies to a class or factory, and Plain is already made"),
    (["--backend", f"{__name__}:SERVED_HANDLER", "--threaded"],
     "--threaded applies to a backend: make your handler with threaded=True"),
    (["--backend", f"{__name__}:make_plain", "--sections", "2"],
     "--sections applies to the simulator only"),
    (["--sections", "3", "-o", "sections=3"], "give --sections or -o sections, not both"),
    (["-o", "sections=0"], "cannot create BackendSimulator: ValueError: sections"),
    (["--sections", "5000"], "cannot create BackendSimulator: ValueError: sections"),
    (["--backend", f"{__name__}:Plain", "--seed", "1"], "--seed applies to the simulator only"),
    (["--backend", f"{__name__}:Plain", "--configurations", "srt"],
     "--configurations applies to the simulator only"),
    (["--configurations", "/no/such.toml"],
     "--configurations: cannot read /no/such.toml: No such file or directory"),
    (["--port", "65535"], "no default control port after 65535"),
    (["--interface", "0.0.0.0", "--endpoint", "unix:/tmp/b.sock"],
     "--endpoint and --interface conflict"),
    (["--port", "1", "--interface", "::1", "--endpoint", "tcp:1"],
     "--endpoint and --port and --interface conflict"),
    (["--control-port", "none", "--control-interface", "::1"],
     "--control-interface and --control-port none contradict each other"),
    (["--endpoint", "unix:/tmp/b.sock", "--control-interface", "::1"],
     "--control-interface needs --control-port N"),
    (["--backend", f"{__name__}:Plain", "--control-interface", "::1"],
     "--control-interface applies to the simulator only"),
])
def test_build_refuses(arguments: list[str], message: str) -> None:
    with pytest.raises(CommandLineError, match=message):
        serve_module.build(parse(*arguments))


@pytest.mark.parametrize("arguments, message", [
    (["--port", "9000", "--endpoint", "tcp:9000"],
     "--endpoint and --port conflict: the endpoint string says where to listen; give one "
     "or the other"),
    (["--port", "0", "--log-file", "/nonexistent/dir/serve.log"],
     "--log-file '/nonexistent/dir/serve.log': cannot open it: No such file or directory"),
])
def test_main_reports_conflicts_and_unwritable_logs_before_listening(
        arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", *arguments]) == 2
    assert capsys.readouterr() == ("", f"discos-backend serve: {message}\n")


def test_main_reports_bad_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--backend", "nosuchmodule:X"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("discos-backend serve: --backend 'nosuchmodule:X': "
                            "no module named 'nosuchmodule'\n")


@pytest.mark.parametrize("address, text", [
    (IPv4Address("TCP", "127.0.0.1", 8978), "tcp:127.0.0.1:8978"),
    (IPv6Address("TCP", "::1", 8978), "tcp6:[::1]:8978"),
    (UNIXAddress("/tmp/b.sock"), "unix:/tmp/b.sock"),
    (UNIXAddress(b"/tmp/b.sock"), "unix:/tmp/b.sock"),
    ("elsewhere", "elsewhere"),
])
def test_describe_address(address: object, text: str) -> None:
    assert serve_module.describe_address(address) == text


def test_listen_error_text() -> None:
    opening = OpenError("SleepyBackend.open() failed: ConnectionRefusedError: no spectrometer")
    assert serve_module._listen_error(Failure(opening), "tcp:1") == str(opening)
    refused = CannotListenError("127.0.0.1", 1, OSError(98, "Address already in use"))
    assert serve_module._listen_error(Failure(refused), "tcp:1") == (
        "cannot listen on tcp:1: Address already in use")
    assert serve_module._listen_error(Failure(RuntimeError("odd")), "x") == (
        "cannot listen on x: odd")
    assert serve_module._listen_error(Failure(RuntimeError("odd")), "x", "auto") == (
        "cannot listen on the control port x (the public port + 1): odd; choose another "
        "with --control-port N, or none to turn it off")
    assert serve_module._listen_error(Failure(refused), "tcp:1", "given").startswith(
        "cannot listen on the control port tcp:1: Address already in use; choose another")


# -- in-process: serve() on a memory reactor ---------------------------------


@pytest.fixture(name="quiet")
def fixture_quiet(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    began: list[bool] = []
    monkeypatch.setattr(serve_module, "_begin_logging",
                        lambda stream, verbose, log_format: began.append(verbose))
    return began


def test_serve_on_memory_reactor(quiet: list[bool]) -> None:
    reactor = MemoryReactorClock()
    out = io.StringIO()
    setup = serve_module.build(parse("--port", "0", "--sections", "3"))
    assert serve_module.serve(setup, reactor=reactor, out=out) == 0
    assert reactor.hasRun
    assert out.getvalue() == ("discos-backend: serving BackendSimulator (3 sections, "
                              "20 configurations) on tcp:0.0.0.0:0; control on tcp:0.0.0.0:0\n")
    assert [server[0] for server in reactor.tcpServers] == [0, 0]
    assert quiet == [False]
    assert len(reactor.triggers["before"]["shutdown"]) == 1


def test_serve_unix_endpoint(quiet: list[bool], tmp_path: Path) -> None:
    reactor = MemoryReactorClock()
    out = io.StringIO()
    path = tmp_path / "b.sock"
    setup = serve_module.build(parse("--endpoint", f"unix:{path}", "-v"))
    assert serve_module.serve(setup, reactor=reactor, out=out) == 0
    assert out.getvalue() == ("discos-backend: serving BackendSimulator (2 sections, "
                              f"20 configurations) on unix:{path}\n")
    assert quiet == [True]


class Refusing(MemoryReactorClock):
    """Binds the first port, refuses the second."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> Any:
        if self.tcpServers:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        return super().listenTCP(port, factory, backlog, interface)


def test_serve_control_port_in_use(quiet: list[bool]) -> None:
    reactor = Refusing()
    out = io.StringIO()
    setup = serve_module.build(parse("--port", "0", "--control-port", "9"))
    with pytest.raises(CommandLineError,
                       match="cannot listen on the control port tcp:9:interface=127.0.0.1: "
                             "Address already in use; choose another with --control-port"):
        serve_module.serve(setup, reactor=reactor, out=out)
    assert out.getvalue() == "" and quiet == [] and not reactor.hasRun


def test_serve_bad_endpoint(quiet: list[bool]) -> None:
    setup = serve_module.build(parse("--endpoint", "tcp:notaport"))
    with pytest.raises(CommandLineError, match="bad endpoint 'tcp:notaport'"):
        serve_module.serve(setup, reactor=MemoryReactorClock(), out=io.StringIO())



def test_serve_late_listen_failure(quiet: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    reactor = MemoryReactorClock()
    stopped: list[str] = []

    class Port:
        def stopListening(self) -> None:
            stopped.append("stopped")

    def late_listen(where: str, *_: Any, **__: Any) -> Deferred:
        starting: Deferred = Deferred()
        if where.startswith("tcp:0:"):
            starting.callback(Port())
        else:
            refused = CannotListenError("127.0.0.1", 5, OSError(98, "Address already in use"))
            reactor.callWhenRunning(starting.errback, Failure(refused))
        return starting

    monkeypatch.setattr(serve_module.server, "listen", late_listen)
    setup = serve_module.build(parse("--port", "0", "--control-port", "5"))
    with pytest.raises(CommandLineError,
                       match="cannot listen on the control port tcp:5:interface=127.0.0.1"):
        serve_module.serve(setup, reactor=reactor, out=io.StringIO())
    assert reactor.hasRun and stopped == ["stopped"] and quiet == []


def test_backend_module_from_the_current_directory(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "herebackend.py").write_text(
        "from discosbackend.backend import Backend\nclass Here(Backend):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert serve_module.load_backend("herebackend:Here").__name__ == "Here"
    assert sys.path[0] == str(tmp_path)


# -- admission and exposure ------------------------------------------------------------

def test_admission_options_reach_the_ports(quiet: list[bool]) -> None:
    reactor = MemoryReactorClock()
    setup = serve_module.build(parse("--port", "0", "--backlog", "64", "--max-connections", "3",
                                     "--idle-timeout", "30", "--allow", "10.0.0.0/8",
                                     "--allow", "::1", "--grace", "1"))
    assert serve_module.serve(setup, reactor=reactor, out=io.StringIO()) == 0
    (_, public, backlog, _), (_, control, control_backlog, _) = reactor.tcpServers
    assert (backlog, control_backlog) == (64, 64)
    assert (public.max_connections, public.idle_timeout) == (3, 30.0)
    assert [str(network) for network in public.allow] == ["10.0.0.0/8", "::1/128"]
    assert control.allow is None  # loopback, and no --control-allow
    assert setup.grace == 1.0
    assert reactor.triggers["before"]["shutdown"][0][1][1] == 1.0  # the grace, at shutdown


def test_admission_defaults() -> None:
    setup = serve_module.build(parse())
    assert setup.admission == {"backlog": 1024, "max_connections": 256, "idle_timeout": None,
                               "allow": None}
    assert serve_module.build(parse("--max-connections", "0")).admission[
        "max_connections"] is None


@pytest.mark.parametrize("arguments, said", [
    (["--allow", "10.0.0.0/33"], "--allow '10.0.0.0/33': not an IP network (e.g. "
                                 "192.168.10.0/24, 10.0.0.5 or ::1)"),
    (["--control-allow", "nonsense"], "--control-allow 'nonsense': not an IP network (e.g. "
                                      "192.168.10.0/24, 10.0.0.5 or ::1)"),
    (["--control-interface", "0.0.0.0"],
     "--control-interface 0.0.0.0: the fault-injection port has no authentication; say who "
     "may use it with --control-allow CIDR"),
])
def test_what_would_expose_or_cannot_be_read_is_refused(arguments: list[str], said: str) -> None:
    with pytest.raises(CommandLineError) as refused:
        serve_module.build(parse(*arguments))
    assert str(refused.value) == said


def test_a_control_port_off_loopback_serves_only_whom_it_is_told(quiet: list[bool]) -> None:
    reactor = MemoryReactorClock()
    setup = serve_module.build(parse("--port", "0", "--control-interface", "0.0.0.0",
                                     "--control-allow", "192.168.10.0/24"))
    serve_module.serve(setup, reactor=reactor, out=io.StringIO())
    control = reactor.tcpServers[1][1]
    assert [str(network) for network in control.allow] == ["192.168.10.0/24"]


@pytest.mark.parametrize("arguments, noted", [([], True), (["--allow", "10.0.0.0/8"], False)])
def test_every_address_is_logged_and_an_open_one_noted(quiet: list[bool], logged: Any,
                                                       arguments: list[str],
                                                       noted: bool) -> None:
    reactor = MemoryReactorClock()  # its ports say 0.0.0.0: every interface
    serve_module.serve(serve_module.build(parse("--port", "0", *arguments)), reactor=reactor,
                       out=io.StringIO())
    texts = logged.texts()
    assert texts.count("listening on tcp:0.0.0.0:0") == 2
    notes = [text for text in texts if text.startswith("note:")]
    assert bool(notes) is noted
    if noted:
        assert notes == ["note: tcp:0.0.0.0:0 is open to every host that can reach it, and the "
                         "protocol has no authentication; restrict it with --allow CIDR"]
