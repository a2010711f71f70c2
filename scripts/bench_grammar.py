#!/usr/bin/env python3
"""Benchmark the grammar: parse and serialize against a plain split baseline.

Measures messages per second for a typical ``?set-section`` request and a
``!status`` reply, side by side with ``str.split(",")`` (and
``",".join(line.split(","))`` for the round trip) in the same run, and
prints the cost ratios.  Usage: ``python scripts/bench_grammar.py [--seconds S]``.
"""

import argparse
import timeit

from discosbackend.grammar import parse_message

LINES = {
    "set-section request": "?set-section,0,100,1500,0,0,3000,1024",
    "status reply": "!status,ok,1763679223.1234567,ok,0",
}


def _per_second(statement: str, namespace: dict, seconds: float) -> float:
    timer = timeit.Timer(statement, globals=namespace)
    number, _ = timer.autorange()
    repeats = max(3, int(seconds / max(timer.timeit(number), 1e-3)))
    best = min(timer.repeat(repeat=repeats, number=number))
    return number / best


def main() -> None:
    """Run the benchmark and print a table of rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="rough time spent per measurement (default 1)")
    options = parser.parse_args()
    print(f"{'line':22} {'split/s':>11} {'parse/s':>11} {'ratio':>6}"
          f" {'split+join/s':>13} {'parse+str/s':>12} {'ratio':>6}")
    worst = 0.0
    for label, line in LINES.items():
        namespace = {"line": line, "parse_message": parse_message}
        assert str(parse_message(line)) == line
        split = _per_second("line.split(',')", namespace, options.seconds)
        parse = _per_second("parse_message(line)", namespace, options.seconds)
        join = _per_second("','.join(line.split(','))", namespace, options.seconds)
        round_trip = _per_second("str(parse_message(line))", namespace, options.seconds)
        ratio = split / parse
        worst = max(worst, ratio)
        print(f"{label:22} {split:11,.0f} {parse:11,.0f} {ratio:5.2f}x"
              f" {join:13,.0f} {round_trip:12,.0f} {join / round_trip:5.2f}x")
    print(f"worst parse cost vs split: {worst:.2f}x (target <= 4x)")


if __name__ == "__main__":
    main()
