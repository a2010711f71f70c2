#!/usr/bin/env python3
"""Benchmark the server against a bare Twisted line server, side by side.

Starts three servers in subprocesses on loopback:

* ``floor``: a bare Twisted ``LineOnlyReceiver`` answering every line with a
  fixed status reply (the cost of Twisted alone);
* ``format``: the same receiver calling an in-memory ``Backend``'s
  ``status()`` (its own, as a backend that asks its hardware has) and
  writing the reply with one f-string: no parsing, no checks, no dispatch
  (what answering ``?status`` costs at the least);
* ``ours``: ``DBProtocolHandler`` over that backend;
* ``threaded`` (with ``--threaded``): the same, with ``threaded=True``: every
  ``status()`` call goes to the worker thread and back;
* ``baseline`` (with ``--baseline DIR``): the same as ``ours``, but with the
  package imported from the source tree ``DIR`` (e.g. a ``git worktree`` of
  an earlier commit), to compare two versions in one run.

For several rounds, with all three servers up, it measures:

* pipelined ``?status`` throughput over 4 connections (requests/s), one
  server after the other, in a different order each round;
* lockstep latency (send one request, wait for its reply) p50 and p99, the
  servers taking turns request by request, so that all see the same machine;
* server CPU time per request (user + system, from /proc) in the pipelined run;
* errors: replies that are not ``!status,ok,...`` lines.

and prints the medians and the ratios to the floor.  Usage::

    python scripts/benchmark.py [--requests 20000] [--lockstep 2000] [--rounds 3]
                                [--threaded] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from typing import Callable

CONNECTIONS = 4
REQUEST = b"?status\r\n"
FLOOR_REPLY = b"!status,ok,1700000000.0000000,ok,0"


def serve(kind: str) -> None:
    """Run one server (see ``KINDS``) on a free loopback port; print the port."""
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import LineOnlyReceiver

    from discosbackend.backend import Backend

    class Polled(Backend):
        """A status() of its own, as a backend that asks its hardware has.

        (Backend's own status() is answered on the reactor even when
        threaded: this one goes to the worker.)
        """

        def status(self) -> tuple[float, str, bool]:
            return self.clock.seconds(), "ok", self.acquiring

    if kind in ("ours", "threaded", "baseline"):
        from discosbackend import server
        from discosbackend.handlers import DBProtocolHandler
        handler = (DBProtocolHandler(Polled(), threaded=True) if kind == "threaded"
                   else DBProtocolHandler(Polled()))
        listening = server.listen(0, handler, interface="127.0.0.1")
        listening.addCallback(lambda port: print(port.getHost().port, flush=True))
        reactor.run()
        return
    backend = Polled()

    class Floor(LineOnlyReceiver):
        """Answers each line with a fixed reply: the cost of Twisted alone."""

        delimiter = b"\n"

        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)
            self.transport.write(b"!version,ok,1.4\r\n")

        def lineReceived(self, line: bytes) -> None:
            self.transport.write(FLOOR_REPLY + b"\r\n")

    class Format(Floor):
        """Asks the backend and formats its answer, and nothing else."""

        def lineReceived(self, line: bytes) -> None:
            stamp, word, acquiring = backend.status()
            self.transport.write(f"!status,ok,{stamp:.7f},{word},{acquiring:d}\r\n".encode())

    port = reactor.listenTCP(0, Factory.forProtocol(Floor if kind == "floor" else Format),
                             interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _connect(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    greeting = b""
    while not greeting.endswith(b"\r\n"):
        greeting += connection.recv(4096)
    return connection


def _count_errors(data: bytes) -> int:
    return sum(1 for line in data.split(b"\r\n")[:-1] if not line.startswith(b"!status,ok,"))


def pipelined(port: int, requests: int) -> tuple[float, int]:
    """Send ``requests`` per connection, all at once; return (requests/s, errors)."""
    connections = [_connect(port) for _ in range(CONNECTIONS)]
    selector = selectors.DefaultSelector()
    outgoing = {c: REQUEST * requests for c in connections}
    received = {c: bytearray() for c in connections}
    remaining = {c: requests for c in connections}
    for connection in connections:
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ | selectors.EVENT_WRITE)
    start = time.perf_counter()
    while any(remaining.values()):
        for key, events in selector.select():
            connection = key.fileobj
            if events & selectors.EVENT_WRITE and outgoing[connection]:
                sent = connection.send(outgoing[connection][:65536])
                outgoing[connection] = outgoing[connection][sent:]
                if not outgoing[connection]:
                    selector.modify(connection, selectors.EVENT_READ)
            if events & selectors.EVENT_READ:
                chunk = connection.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("server closed the connection")
                received[connection] += chunk
                remaining[connection] = requests - received[connection].count(b"\n")
    elapsed = time.perf_counter() - start
    errors = sum(_count_errors(bytes(data)) for data in received.values())
    for connection in connections:
        selector.unregister(connection)
        connection.close()
    return CONNECTIONS * requests / elapsed, errors


def lockstep(ports: dict[str, int], count: int) -> dict[str, tuple[float, float, int]]:
    """One request at a time, the servers taking turns; per server (p50 µs, p99 µs, errors)."""
    connections = {kind: _connect(port) for kind, port in ports.items()}
    latencies: dict[str, list[float]] = {kind: [] for kind in ports}
    errors = dict.fromkeys(ports, 0)
    order = list(connections.items())
    for turn in range(count):
        for kind, connection in order[turn % len(order):] + order[:turn % len(order)]:
            start = time.perf_counter_ns()
            connection.sendall(REQUEST)
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += connection.recv(4096)
            latencies[kind].append((time.perf_counter_ns() - start) / 1000)
            errors[kind] += _count_errors(reply)
    results = {}
    for kind, connection in connections.items():
        connection.close()
        times = sorted(latencies[kind])
        results[kind] = (statistics.median(times), times[int(len(times) * 0.99) - 1],
                         errors[kind])
    return results


def _start(kind: str, baseline: str | None) -> tuple[subprocess.Popen, int]:
    environment = dict(os.environ)
    if kind == "baseline" and baseline:
        # First on the path: the baseline tree's package, not the installed one.
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [os.path.abspath(baseline), environment.get("PYTHONPATH")]))
    process = subprocess.Popen(  # pylint: disable=consider-using-with  # lives across rounds
        [sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True,
        env=environment)
    return process, int(process.stdout.readline())


KINDS = ("floor", "format", "ours", "threaded", "baseline")


def _kinds(options: argparse.Namespace) -> tuple[str, ...]:
    return tuple(kind for kind in KINDS
                 if (kind != "threaded" or options.threaded)
                 and (kind != "baseline" or options.baseline))


def _round(options: argparse.Namespace, number: int) -> dict[str, dict[str, float]]:
    """One round: all servers up; pipelined one by one, then lockstep in turns."""
    kinds = _kinds(options)
    started = {kind: _start(kind, options.baseline) for kind in kinds}
    ports = {kind: port for kind, (_, port) in started.items()}
    results: dict[str, dict[str, float]] = {}
    try:
        lockstep(ports, 100)  # warm up
        order = kinds[number % len(kinds):] + kinds[:number % len(kinds)]
        for kind in order:
            process = started[kind][0]
            cpu_before = _cpu_seconds(process.pid)
            rate, errors = pipelined(ports[kind], options.requests)
            cpu = (_cpu_seconds(process.pid) - cpu_before) / (CONNECTIONS * options.requests)
            results[kind] = {"rate": rate, "cpu_us": cpu * 1e6, "errors": errors}
        for kind, (p50, p99, errors) in lockstep(ports, options.lockstep).items():
            results[kind].update(p50=p50, p99=p99)
            results[kind]["errors"] += errors
    finally:
        for process, _ in started.values():
            process.terminate()
            process.wait()
    return results


def main() -> None:
    """Measure the servers in several rounds and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000,
                        help="pipelined requests per connection (default 20000)")
    parser.add_argument("--lockstep", type=int, default=2000,
                        help="lockstep requests per server (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--threaded", action="store_true",
                        help="also measure ours with threaded=True as 'threaded'")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also measure the package from this source tree (e.g. a git "
                             "worktree of an earlier commit) as 'baseline'")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve)
        return
    rounds = [_round(options, number) for number in range(options.rounds)]
    median: Callable[[str, str], float] = lambda kind, key: statistics.median(
        r[kind][key] for r in rounds)
    print(f"{CONNECTIONS} connections x {options.requests} pipelined ?status, "
          f"{options.lockstep} lockstep each, median of {options.rounds} rounds")
    print(f"{'':8} {'pipelined req/s':>16} {'p50 us':>9} {'p99 us':>9} {'cpu us/req':>11}"
          f" {'errors':>7}")
    kinds = _kinds(options)
    for kind in kinds:
        print(f"{kind:8} {median(kind, 'rate'):16,.0f} {median(kind, 'p50'):9.1f}"
              f" {median(kind, 'p99'):9.1f} {median(kind, 'cpu_us'):11.2f}"
              f" {sum(r[kind]['errors'] for r in rounds):7.0f}")
    pairs = [(kind, "floor") for kind in kinds[1:]]
    if options.threaded:
        pairs.append(("threaded", "ours"))
    if options.baseline:
        pairs.append(("ours", "baseline"))
    for kind, reference in pairs:
        throughput = median(kind, "rate") / median(reference, "rate")
        latency = median(kind, "p50") / median(reference, "p50")
        cpu = median(kind, "cpu_us") / median(reference, "cpu_us")
        print(f"ratios {kind}/{reference}: throughput {throughput:.2f}x, lockstep p50"
              f" {latency:.2f}x, cpu/request {cpu:.2f}x")


if __name__ == "__main__":
    main()
