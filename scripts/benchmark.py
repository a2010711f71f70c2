#!/usr/bin/env python3
"""Benchmark the server against a bare Twisted line server, side by side.

Starts two servers in subprocesses on loopback: ours (``DBProtocolHandler``
over a trivial in-memory ``Backend``) and the floor (a bare Twisted
``LineOnlyReceiver`` that answers every line with a fixed status reply).
Then, alternating between them for several rounds, it measures:

* pipelined ``?status`` throughput over 4 connections (requests/s);
* lockstep latency (send one request, wait for its reply) p50 and p99;
* server CPU time per request (user + system, from /proc) in the pipelined run;
* errors: replies that are not ``!status,ok,...`` lines.

and prints the medians and the ratios ours/floor.  Usage::

    python scripts/benchmark.py [--requests 20000] [--lockstep 2000] [--rounds 3]
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
    """Run one server (``ours`` or ``floor``) on a free loopback port; print the port."""
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import LineOnlyReceiver

    if kind == "ours":
        from discosbackend import server
        from discosbackend.backend import Backend
        from discosbackend.handlers import DBProtocolHandler
        listening = server.listen(0, DBProtocolHandler(Backend()), interface="127.0.0.1")
    else:
        class Floor(LineOnlyReceiver):
            """Answers each line with a fixed reply: the cost of Twisted alone."""

            delimiter = b"\n"

            def connectionMade(self) -> None:
                self.transport.setTcpNoDelay(True)
                self.transport.write(b"!version,ok,1.4\r\n")

            def lineReceived(self, line: bytes) -> None:
                self.transport.write(FLOOR_REPLY + b"\r\n")

        port = reactor.listenTCP(0, Factory.forProtocol(Floor), interface="127.0.0.1")
        listening = None
        print(port.getHost().port, flush=True)
    if listening is not None:
        listening.addCallback(lambda port: print(port.getHost().port, flush=True))
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


def lockstep(port: int, count: int) -> tuple[float, float, int]:
    """One request at a time; return (p50 µs, p99 µs, errors)."""
    connection = _connect(port)
    latencies = []
    errors = 0
    for _ in range(count):
        start = time.perf_counter_ns()
        connection.sendall(REQUEST)
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += connection.recv(4096)
        latencies.append((time.perf_counter_ns() - start) / 1000)
        errors += _count_errors(reply)
    connection.close()
    latencies.sort()
    return (statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], errors)


def _start(kind: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(  # pylint: disable=consider-using-with  # lives across rounds
        [sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True)
    return process, int(process.stdout.readline())


def _measure(kind: str, options: argparse.Namespace) -> dict[str, float]:
    process, port = _start(kind)
    try:
        lockstep(port, 200)  # warm up
        cpu_before = _cpu_seconds(process.pid)
        rate, errors = pipelined(port, options.requests)
        cpu = (_cpu_seconds(process.pid) - cpu_before) / (CONNECTIONS * options.requests)
        p50, p99, lock_errors = lockstep(port, options.lockstep)
    finally:
        process.terminate()
        process.wait()
    return {"rate": rate, "p50": p50, "p99": p99, "cpu_us": cpu * 1e6,
            "errors": errors + lock_errors}


def main() -> None:
    """Measure both servers in alternating rounds and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000,
                        help="pipelined requests per connection (default 20000)")
    parser.add_argument("--lockstep", type=int, default=2000,
                        help="lockstep requests (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--serve", choices=("ours", "floor"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve)
        return
    results: dict[str, list[dict[str, float]]] = {"floor": [], "ours": []}
    for _ in range(options.rounds):
        for kind in ("floor", "ours"):
            results[kind].append(_measure(kind, options))
    median: Callable[[str, str], float] = lambda kind, key: statistics.median(
        r[key] for r in results[kind])
    print(f"{CONNECTIONS} connections x {options.requests} pipelined ?status, "
          f"{options.lockstep} lockstep, median of {options.rounds} alternating rounds")
    print(f"{'':8} {'pipelined req/s':>16} {'p50 us':>9} {'p99 us':>9} {'cpu us/req':>11}"
          f" {'errors':>7}")
    for kind in ("floor", "ours"):
        print(f"{kind:8} {median(kind, 'rate'):16,.0f} {median(kind, 'p50'):9.1f}"
              f" {median(kind, 'p99'):9.1f} {median(kind, 'cpu_us'):11.2f}"
              f" {sum(r['errors'] for r in results[kind]):7.0f}")
    throughput = median("ours", "rate") / median("floor", "rate")
    latency = median("ours", "p50") / median("floor", "p50")
    cpu = median("ours", "cpu_us") / median("floor", "cpu_us")
    print(f"ratios ours/floor: throughput {throughput:.2f}x (target >= 0.5),"
          f" lockstep p50 {latency:.2f}x (target <= 1.1), cpu/request {cpu:.2f}x")


if __name__ == "__main__":
    main()
