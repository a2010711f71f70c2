#!/usr/bin/env python3
"""Benchmark the grammar against a plain ``str.split(",")`` baseline.

For a typical ``?set-section`` request and a ``!status`` reply it measures,
in messages per second:

* ``parse_message(line)`` against ``line.split(",")``;
* ``str(parse_message(line))`` (parse, then serialize) against
  ``",".join(line.split(","))``;
* building the reply with ``ok(...)`` and serializing it, against
  ``",".join(values)``.

Every statement is timed in alternating rounds in the same run and the best
round counts, so the ratios hold on a noisy machine.  Usage:
``python scripts/bench_grammar.py [--rounds N]``.
"""

import argparse
import timeit

from discosbackend.grammar import ok, parse_message

LINES = {
    "set-section request": "?set-section,0,100,1500,0,0,3000,1024",
    "status reply": "!status,ok,1763679223.1234567,ok,0",
}
PAIRS = (  # (label, ours, baseline)
    ("parse", "parse_message(line)", "line.split(',')"),
    ("parse+str", "str(parse_message(line))", "','.join(line.split(','))"),
    ("build+str", "str(ok(name, *values))", "','.join(values)"),
)


def _rates(statements: list[str], namespace: dict, rounds: int) -> list[float]:
    """Best rate (per second) of each statement, timed in alternating rounds."""
    timers = [timeit.Timer(statement, globals=namespace) for statement in statements]
    number = max(timer.autorange()[0] for timer in timers)
    best = [float("inf")] * len(timers)
    for _ in range(rounds):
        for index, timer in enumerate(timers):
            best[index] = min(best[index], timer.timeit(number))
    return [number / seconds for seconds in best]


def main() -> None:
    """Run the benchmark and print rates and cost ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15,
                        help="alternating rounds per measurement (default 15)")
    options = parser.parse_args()
    print(f"{'line':20} {'what':10} {'ours/s':>11} {'baseline/s':>11} {'cost':>6}")
    worst = 0.0
    for label, line in LINES.items():
        message = parse_message(line)
        assert str(message) == line
        namespace = {"line": line, "parse_message": parse_message, "ok": ok,
                     "name": message.name, "values": message.arguments}
        for what, ours, baseline in PAIRS:
            if what == "build+str" and message.is_request():
                continue
            ours_rate, baseline_rate = _rates([ours, baseline], namespace, options.rounds)
            ratio = baseline_rate / ours_rate
            if what == "parse":
                worst = max(worst, ratio)
            print(f"{label:20} {what:10} {ours_rate:11,.0f} {baseline_rate:11,.0f}"
                  f" {ratio:5.2f}x")
    print(f"worst parse cost vs split: {worst:.2f}x (target <= 4x)")


if __name__ == "__main__":
    main()
