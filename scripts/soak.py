#!/usr/bin/env python3
"""Soak a live server with hostile clients while a well-behaved one polls it.

Starts ``discos-backend serve`` (the simulator, default settings) on a free
loopback port and, for ``--seconds``, runs at once:

* a poller, as DISCOS does: one connection, ``?status`` every 50 ms, one at
  a time, timing each reply and checking it is a grammatical ``!status,ok``;
* non-readers: connections that pipeline requests and never read a reply;
* slowloris connections: one byte a second, never a line end;
* bursts: ``--burst`` connections opened at once, every few seconds;
* junk: random bytes, line ends included.

Everything stays on loopback and stops by itself.  It prints the server's
peak resident memory, the poll's p50/p99 latency, how many polls got no
reply or a bad one, and what the hostile clients did.  Targets: peak RSS
under 200 MB, p99 under 50 ms, nothing missing.  Usage::

    python scripts/soak.py [--seconds 60] [--burst 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import random
import re
import socket
import statistics
import subprocess
import sys
import time

LOOPBACK = "127.0.0.1"
POLL_EVERY = 0.05
POLL_TIMEOUT = 5.0
_STATUS = re.compile(rb"!status,ok,[0-9]+\.[0-9]{7},[^,\s]+,[01]\r\n")
_PORT = re.compile(r"on tcp:[0-9.]+:([0-9]+)")


def start_server() -> tuple[subprocess.Popen, int]:
    """The simulator on a free loopback port, with its default settings."""
    process = subprocess.Popen(  # pylint: disable=consider-using-with  # lives for the soak
        [sys.executable, "-m", "discosbackend.cli", "serve", "--port", "0", "--control-port",
         "none"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    found = _PORT.search(process.stdout.readline())
    if found is None:
        process.kill()
        raise SystemExit("the server did not start")
    return process, int(found.group(1))


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def poll(port: int, seconds: float, results: multiprocessing.Queue) -> None:
    """DISCOS, in a process of its own: one request at a time, every 50 ms.

    Puts (latencies in seconds, polls missing, polls answered badly) on
    ``results``.  Its own process, so that the hostile clients' work does
    not delay it on our side and what it measures is the server.
    """
    latencies: list[float] = []
    missing = bad = 0
    with socket.create_connection((LOOPBACK, port), timeout=POLL_TIMEOUT) as connection:
        stream = connection.makefile("rb")
        stream.readline()  # the greeting
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            start = time.perf_counter()
            connection.sendall(b"?status\r\n")
            try:
                line = stream.readline()
            except socket.timeout:
                missing += 1
                break  # the exchange is out of step from now on
            latencies.append(time.perf_counter() - start)
            if not _STATUS.fullmatch(line):
                bad += 1
            time.sleep(POLL_EVERY)
    results.put((latencies, missing, bad))


class Soak:
    """The clients of one soak, and what they saw."""

    def __init__(self, port: int, seconds: float, burst: int) -> None:
        self.port = port
        self.until = time.monotonic() + seconds
        self.burst = burst
        self.latencies: list[float] = []
        self.missing = 0
        self.bad = 0
        self.counts = {"non-readers": 0, "slowloris": 0, "burst connections": 0,
                       "burst refusals": 0, "junk bytes": 0}

    def running(self) -> bool:
        return time.monotonic() < self.until

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(LOOPBACK, self.port)

    async def non_reader(self) -> None:
        """Pipelines requests for ever and reads nothing."""
        _, writer = await self.connect()
        self.counts["non-readers"] += 1
        try:
            while self.running():
                writer.write(b"?get-tpi,0,0\r\n?status\r\n" * 512)
                await asyncio.wait_for(writer.drain(), 1)
        except (asyncio.TimeoutError, ConnectionError):
            pass  # the server stopped reading us: as it should
        writer.transport.abort()

    async def slowloris(self) -> None:
        """One byte a second, never a line end."""
        try:
            _, writer = await self.connect()
        except OSError:
            return
        self.counts["slowloris"] += 1
        try:
            while self.running():
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(1)
        except ConnectionError:
            pass
        writer.transport.abort()

    async def bursts(self) -> None:
        """``burst`` connections at once, every few seconds; each reads its first line."""
        while self.running():
            results = await asyncio.gather(*(self._one_of_a_burst() for _ in range(self.burst)))
            self.counts["burst connections"] += len(results)
            self.counts["burst refusals"] += sum(1 for refused in results if refused)
            await asyncio.sleep(3)

    async def _one_of_a_burst(self) -> bool:
        try:
            reader, writer = await self.connect()
            line = await asyncio.wait_for(reader.readline(), 10)
            writer.transport.abort()
        except (OSError, asyncio.TimeoutError):
            return True
        return b"too many connections" in line

    async def junk(self) -> None:
        """Random bytes, line ends among them."""
        generator = random.Random(1)
        while self.running():
            try:
                reader, writer = await self.connect()
                for _ in range(50):
                    chunk = bytes(generator.getrandbits(8) for _ in range(256)) + b"\n"
                    writer.write(chunk)
                    self.counts["junk bytes"] += len(chunk)
                await writer.drain()
                await asyncio.sleep(0.2)
                writer.transport.abort()
                del reader
            except ConnectionError:
                pass

    async def run(self, non_readers: int, slowloris: int) -> None:
        tasks = [self.bursts(), self.junk()]
        tasks += [self.non_reader() for _ in range(non_readers)]
        tasks += [self.slowloris() for _ in range(slowloris)]
        await asyncio.gather(*tasks)


def main() -> None:
    """Soak a server and print what it cost and how the poller fared."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--burst", type=int, default=2000,
                        help="connections opened at once in each burst (default 2000)")
    parser.add_argument("--non-readers", type=int, default=20, help="(default 20)")
    parser.add_argument("--slowloris", type=int, default=100, help="(default 100)")
    options = parser.parse_args()
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # writes to closed connections
    process, port = start_server()
    soak = Soak(port, options.seconds, options.burst)
    results: multiprocessing.Queue = multiprocessing.Queue()
    poller = multiprocessing.Process(target=poll, args=(port, options.seconds, results))
    try:
        poller.start()  # DISCOS connects first
        time.sleep(0.5)
        asyncio.run(soak.run(options.non_readers, options.slowloris))
        soak.latencies, soak.missing, soak.bad = results.get(timeout=60)
        poller.join(30)
        peak = peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(30)
    latencies = sorted(soak.latencies)
    p50 = statistics.median(latencies) * 1e3 if latencies else float("nan")
    p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1e3 if latencies else float("nan")
    print(f"soaked {options.seconds:g} s: " + ", ".join(f"{value} {name}"
                                                      for name, value in soak.counts.items()))
    print(f"server peak RSS {peak:.1f} MB; poll: {len(latencies)} replies, p50 {p50:.2f} ms, "
          f"p99 {p99:.2f} ms, {soak.missing} missing, {soak.bad} ungrammatical")
    met = peak < 200 and p99 < 50 and not soak.missing and not soak.bad
    print(f"targets (peak RSS < 200 MB, p99 < 50 ms, nothing missing): "
          f"{'met' if met else 'NOT met'}")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
