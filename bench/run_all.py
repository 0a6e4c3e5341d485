"""Benchmarks: the receiver, the worker and the whole path, each next to its ceiling.

    python bench/run_all.py            # a few minutes; writes docs/benchmarks.md
    python bench/run_all.py --quick    # shorter runs, same sections

Runs each scenario script in turn (SCENARIOS; each runs alone too) and writes their
sections to docs/benchmarks.md, keeping the sections the other scripts measured. Every
figure is measured in this run on this machine, next to what it is compared with.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import end_to_end, naive_handler, receiver, stripe_pace, verify, worker_pools
from bench.harness import DOC, render, write_page

SCENARIOS = (verify, receiver, naive_handler, worker_pools, stripe_pace, end_to_end)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    sections = []
    for scenario in SCENARIOS:
        sections.append(scenario.measure(args.quick))
        print(render(sections[-1:]), flush=True)
    write_page(sections, f"python bench/run_all.py{' --quick' if args.quick else ''}", args.out)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
