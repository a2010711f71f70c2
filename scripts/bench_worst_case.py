#!/usr/bin/env python3
"""Time the worst lines we can build for each parser on the request path.

A line of up to the server's 64 KiB limit must not stall the reactor: every
parser (grammar, name scanning, argument kinds, reason cleaning, the whole
responder) has to cost time linear in the line's length.  For each case this
times lines of 1 KiB, 16 KiB and 64 KiB, prints the cost per byte, the ratio
of the 64 KiB cost per byte to the 1 KiB one (target: at most 2) and the
64 KiB total (target: under 20 ms).  Usage::

    python scripts/bench_worst_case.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

from discosbackend.backend import Backend
from discosbackend.commands import FLOAT, INTEGER, TEXT, TIMESTAMP, WORD, reason_text
from discosbackend.grammar import name_of, parse_line, split_arguments
from discosbackend.handlers import DBProtocolHandler
from discosbackend.responder import Responder

SIZES = (1024, 16 * 1024, 64 * 1024)


def _fill(pattern: bytes, size: int, head: bytes = b"", tail: bytes = b"") -> bytes:
    """``head`` + ``pattern`` repeated + ``tail``, ``size`` bytes in all."""
    room = size - len(head) - len(tail)
    return head + (pattern * (room // len(pattern) + 1))[:room] + tail


def _kind(parse: Callable[[str], object]) -> Callable[[bytes], object]:
    def run(line: bytes) -> object:
        try:
            return parse(line.decode())
        except ValueError:
            return None
    return run


def _grammar(line: bytes) -> object:
    try:
        return parse_line(line, line_end=False)
    except ValueError:
        return None


def _split(line: bytes) -> object:
    try:
        return split_arguments(line.decode("utf-8", "surrogateescape"), "x")
    except ValueError:
        return None


RESPONDER = Responder(DBProtocolHandler(Backend()))

#: name -> (what is timed, how to build a line of a given size)
CASES: dict[str, tuple[Callable[[bytes], object], Callable[[int], bytes]]] = {
    "float: digits then junk": (_kind(FLOAT.parse), lambda n: _fill(b"1", n, tail=b"x")),
    "float: fraction then junk": (_kind(FLOAT.parse),
                                  lambda n: _fill(b"1", n, head=b"1.", tail=b"e")),
    "integer: digits then junk": (_kind(INTEGER.parse), lambda n: _fill(b"1", n, tail=b"x")),
    "timestamp: digits.digits junk": (_kind(TIMESTAMP.parse),
                                      lambda n: _fill(b"1", n, head=b"1.", tail=b"x")),
    "word: many words": (_kind(WORD.parse), lambda n: _fill(b"a ", n)),
    "text: every character": (_kind(TEXT.parse), lambda n: _fill(b"\xc3\xa9", n)),
    "grammar: escapes": (_grammar, lambda n: _fill(b"\\,", n, head=b"?x,")),
    "grammar: control at the end": (_grammar, lambda n: _fill(b"a,", n, head=b"?x,",
                                                               tail=b"\x00")),
    "grammar: long name": (_grammar, lambda n: _fill(b"a", n, head=b"?")),
    "split arguments: commas": (_split, lambda n: _fill(b",", n)),
    "name of a broken line": (name_of, lambda n: _fill(b"a", n, head=b"?")),
    "reason cleaning": (lambda line: reason_text(line.decode()),
                        lambda n: _fill(b", \t\x01", n)),
    "responder: get-tpi digits junk": (RESPONDER.respond,
                                       lambda n: _fill(b"1", n, head=b"?get-tpi,", tail=b"x,0")),
    "responder: set-section floats": (RESPONDER.respond,
                                      lambda n: _fill(b"1", n, head=b"?set-section,0,1.",
                                                      tail=b"e,1,0,0,1,1")),
    "responder: start timestamp": (RESPONDER.respond,
                                   lambda n: _fill(b"1", n, head=b"?start,1.", tail=b"x")),
    "responder: unknown long name": (RESPONDER.respond, lambda n: _fill(b"a", n, head=b"?")),
    "responder: filename escapes": (RESPONDER.respond,
                                    lambda n: _fill(b"\\,", n, head=b"?set-filename,")),
}


def _seconds(run: Callable[[bytes], object], line: bytes, repeat: int) -> float:
    """The best of ``repeat`` timings of ``run(line)``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run(line)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Time every case at every size and print the costs and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timings per line (best kept)")
    options = parser.parse_args()
    print(f"{'case':34} " + " ".join(f"{size // 1024:>5} KiB ns/B" for size in SIZES)
          + "  64K/1K  64K ms")
    worst_ratio = worst_ms = 0.0
    for name, (run, build) in CASES.items():
        per_byte = []
        for size in SIZES:
            line = build(size)
            per_byte.append(_seconds(run, line, options.repeat) / len(line))
        ratio = per_byte[-1] / per_byte[0]
        total_ms = per_byte[-1] * SIZES[-1] * 1e3
        worst_ratio, worst_ms = max(worst_ratio, ratio), max(worst_ms, total_ms)
        print(f"{name:34} " + " ".join(f"{cost * 1e9:13.2f}" for cost in per_byte)
              + f"  {ratio:6.2f}  {total_ms:6.2f}")
    verdict = "met" if worst_ratio <= 2 and worst_ms < 20 else "NOT met"
    print(f"worst: 64K/1K per byte {worst_ratio:.2f}x, 64K line {worst_ms:.2f} ms "
          f"(targets: <= 2x and < 20 ms: {verdict})")


if __name__ == "__main__":
    main()
