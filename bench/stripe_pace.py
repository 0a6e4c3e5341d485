"""The worker against Stripe's rate limit: the emulator answers 429 past 25 requests a
second (Stripe's documented test-mode limit, https://docs.stripe.com/rate-limits), at 300 ms
a call; 64 threads, without our pace and at the defaults.

    .venv/bin/python bench/stripe_pace.py           # 500 signups a row
    .venv/bin/python bench/stripe_pace.py --quick   # 150
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.harness import Section, run_scenario
from bench.worker_pools import drain_rate


def measure(quick: bool) -> Section:
    n = 150 if quick else 500
    section = Section(
        "Worker against Stripe's test-mode limit (25 req/s, 300 ms a call)", "bench/stripe_pace.py"
    )
    rows = []
    for label, ours in (
        ("no pace (STRIPE_RATE_LIMIT=0, STRIPE_ENDPOINT_RATE=0)", 0.0),
        ("defaults", None),
    ):
        r = drain_rate(n, 300, "threads", 64, rate_limit=25, our_limit=ours)
        rows.append(
            (label, f"{r['tasks_per_s']:.1f}", r["429s"], f"{r['created']} of {n}", r["errors"])
        )
    section.table(("worker", "tasks/s", "429s from Stripe", "customers", "errors"), rows)
    return section


def main() -> int:
    return run_scenario(measure, __doc__)


if __name__ == "__main__":
    sys.exit(main())
