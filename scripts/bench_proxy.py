#!/usr/bin/env python3
"""Measure the latency the proxy adds: lockstep ``?status`` direct vs. through the proxy.

Starts, in subprocesses on loopback, ``discos-backend serve`` (the
simulator) and two ``discos-backend proxy`` in front of it, one of them
recording a transcript to a temporary file.  Then, for several rounds, it
sends lockstep ``?status`` requests (one at a time, each waiting for its
reply) on three connections, ``direct``, ``proxy`` and ``recording``,
taking turns request by request so that all three see the same machine (the
lockstep measurement of ``scripts/benchmark.py``).  It prints each path's
p50 and p99 per round and the median over rounds, and the p50 the proxy
adds to the direct path.  Usage::

    python scripts/bench_proxy.py [--lockstep 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark import lockstep

CLI = [sys.executable, "-m", "discosbackend.cli"]
_PORT_RE = re.compile(r" on tcp:127\.0\.0\.1:([0-9]+)| proxying tcp:127\.0\.0\.1:([0-9]+)")
#: The proxy's target: under this many milliseconds added to the lockstep p50.
TARGET_MS = 0.2


def _start(*arguments: str) -> tuple[subprocess.Popen, int]:
    """Start ``discos-backend ARGUMENTS``; return it and the port its first line names."""
    process = subprocess.Popen(  # pylint: disable=consider-using-with  # lives across rounds
        [*CLI, *arguments], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = _PORT_RE.search(line)
    if found is None:
        process.kill()
        raise SystemExit(f"discos-backend {arguments[0]} did not start: {line!r}")
    return process, int(found.group(1) or found.group(2))


def _start_all(record: Path) -> tuple[list[subprocess.Popen], dict[str, int]]:
    """The backend, a proxy and a recording proxy: the processes and each path's port."""
    backend, backend_port = _start("serve", "--port", "0", "--control-port", "none")
    to = f"127.0.0.1:{backend_port}"
    plain, plain_port = _start("proxy", "--listen", "0", "--to", to)
    recording, recording_port = _start("proxy", "--listen", "0", "--to", to,
                                       "--record", str(record))
    return ([recording, plain, backend],
            {"direct": backend_port, "proxy": plain_port, "recording": recording_port})


def measure(lockstep_count: int, rounds: int) -> tuple[dict[str, tuple[float, float]], int]:
    """Serve, proxy, record and measure; the median (p50, p99) per path, and lines recorded."""
    with tempfile.TemporaryDirectory() as directory:
        record = Path(directory) / "bench.jsonl"
        processes, ports = _start_all(record)
        results = []
        try:
            lockstep(ports, 200)  # warm up
            for number in range(rounds):
                results.append(lockstep(ports, lockstep_count))
                print(f"round {number + 1}: " + ", ".join(
                    f"{kind} p50 {p50:.1f} us p99 {p99:.1f} us ({errors} errors)"
                    for kind, (p50, p99, errors) in results[-1].items()), flush=True)
        finally:
            for process in processes:
                process.terminate()
                process.wait()
        with record.open(encoding="utf-8") as lines:
            recorded = sum(1 for _ in lines)
    return {kind: (statistics.median(result[kind][0] for result in results),
                   statistics.median(result[kind][1] for result in results))
            for kind in ports}, recorded


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lockstep", type=int, default=3000,
                        help="lockstep requests per path and round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    options = parser.parse_args()
    median, recorded = measure(options.lockstep, options.rounds)
    print(f"{options.lockstep} lockstep ?status per path, median of {options.rounds} rounds:")
    for kind, (p50, p99) in median.items():
        print(f"  {kind:10} p50 {p50:7.1f} us   p99 {p99:7.1f} us")
    for kind in ("proxy", "recording"):
        added = (median[kind][0] - median["direct"][0]) / 1000
        verdict = "under" if added < TARGET_MS else "OVER"
        print(f"{kind} adds {added:.3f} ms to the p50 ({verdict} the {TARGET_MS} ms target)")
    print(f"the recording proxy wrote {recorded} transcript lines")


if __name__ == "__main__":
    main()
