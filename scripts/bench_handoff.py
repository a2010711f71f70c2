#!/usr/bin/env python3
"""Time a call's round trip from the reactor to a worker thread and back.

Measures, one call at a time, the p50 and p90 of the time from handing a
trivial call to the thread until its result is back on the reactor, for:

* ``pool``: a Twisted ``ThreadPool`` with one thread
  (``callInThreadWithCallback`` + ``reactor.callFromThread``);
* ``worker``: :class:`discosbackend.worker.Worker`.

Each runs in its own process, one after the other, ``--rounds`` times.
Usage::

    python scripts/bench_handoff.py [--calls 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from functools import partial
from typing import Any, Callable

KINDS = ("pool", "worker")


def measure(kind: str, calls: int) -> None:
    """Print the p50 and p90 round trip (µs) of ``calls`` calls through ``kind``."""
    from twisted.internet import reactor
    from twisted.python.threadpool import ThreadPool

    from discosbackend.worker import Worker

    submit: Callable[[Callable[[Any], None]], None]
    if kind == "pool":
        pool = ThreadPool(1, 1)

        def submit(done: Callable[[Any], None]) -> None:
            pool.callInThreadWithCallback(
                lambda ok, result: reactor.callFromThread(done, result), int)
        starting, stopping = pool.start, pool.stop
    else:
        worker = Worker("bench", reactor)

        def submit(done: Callable[[Any], None]) -> None:
            worker.call("int()", int).addCallback(done)
        starting, stopping = worker.start, partial(worker.stop, 5)
    times: list[float] = []

    def one() -> None:
        if len(times) == calls:
            stopping()
            reactor.stop()
            return
        began = time.perf_counter()

        def done(_: Any) -> None:
            times.append((time.perf_counter() - began) * 1e6)
            reactor.callLater(0, one)
        submit(done)

    reactor.callWhenRunning(starting)
    reactor.callWhenRunning(one)
    reactor.run()
    times.sort()
    print(f"{times[len(times) // 2]:.1f} {times[int(len(times) * 0.9)]:.1f}", flush=True)


def main() -> None:
    """Measure each kind in its own process, several rounds; print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per round (3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--measure", choices=KINDS, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        measure(options.measure, options.calls)
        return
    results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    for _ in range(options.rounds):
        for kind in KINDS:
            out = subprocess.run([sys.executable, __file__, "--measure", kind, "--calls",
                                  str(options.calls)], capture_output=True, text=True,
                                 check=True).stdout.split()
            results[kind].append((float(out[0]), float(out[1])))
    print(f"round trip reactor -> thread -> reactor, {options.calls} calls, median of "
          f"{options.rounds} rounds")
    for kind in KINDS:
        p50 = statistics.median(p50 for p50, _ in results[kind])
        p90 = statistics.median(p90 for _, p90 in results[kind])
        print(f"{kind:8} p50 {p50:6.1f} us   p90 {p90:6.1f} us")


if __name__ == "__main__":
    main()
