"""The worker's pools: tasks/s draining queued signups (Create Customer), prefork against
threads, at two Stripe latencies (the emulator's), with the pace off to show each pool's own
ceiling; worker RSS under load.

    .venv/bin/python bench/worker_pools.py           # 1,000 signups a row at 0 ms
    .venv/bin/python bench/worker_pools.py --quick   # 300
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.harness import Section, Stack, drain, queue_signups, run_scenario


def drain_rate(
    n: int,
    latency_ms: float,
    pool: str,
    concurrency: int,
    rate_limit: float = 0.0,
    our_limit: float | None = 0.0,
) -> dict:
    """Tasks/s draining `n` queued signups, counted from the first result (so start-up is
    not in the figure); the emulator's counts."""
    stack = Stack(
        f"benchwk{os.getpid()}{pool}{int(latency_ms)}{concurrency}",
        latency_ms,
        pool,
        concurrency,
        web=False,
        rate_limit=rate_limit,
        our_limit=our_limit,
    )
    try:
        queue_signups(stack.prefix, n)
        worker = stack.worker()
        drain(stack, 1)
        seconds = drain(stack, n)
        rss = stack.rss_mb(worker)  # under load: the queue is just drained
        stats = stack.emulator.state.stats
        return {
            "tasks_per_s": (n - 1) / seconds,
            "rss_mb": rss,
            "created": stats["created"]["test"],
            "429s": stats["faults"],
            "errors": stack.redis.xlen(f"{stack.prefix}:errors"),
        }
    finally:
        stack.stop()


def measure(quick: bool) -> Section:
    n = 300 if quick else 1000
    runs = [
        (0, "prefork", 8, n),
        (0, "threads", 16, n),
        (300, "prefork", 8, n // 4),
        (300, "prefork", 16, n // 4),
        (300, "threads", 16, n // 4),
        (300, "threads", 32, n // 4),
        (300, "threads", 64, n // 2),
    ]
    results = [(run, drain_rate(run[3], run[0], run[1], run[2])) for run in runs]
    section = Section(
        "Worker: tasks/s draining queued signups (Create Customer)", "bench/worker_pools.py"
    )
    section.table(
        ("emulator latency", "pool", "concurrency", "signups", "tasks/s", "worker RSS MB"),
        [
            (f"{lat} ms", pool, conc, count, f"{r['tasks_per_s']:.1f}", f"{r['rss_mb']:.0f}")
            for (lat, pool, conc, count), r in results
        ],
    )
    by = {(lat, pool, conc): r for (lat, pool, conc, _n), r in results}
    prefork, threads = by[(300, "prefork", 16)], by[(300, "threads", 16)]
    section.say(
        "No pace in any row (STRIPE_RATE_LIMIT=0, STRIPE_ENDPOINT_RATE=0: the pool's own "
        "ceiling). At 300 ms a call and 16 "
        f"each, threads drained {threads['tasks_per_s'] / prefork['tasks_per_s']:.2f}x "
        f"prefork's rate in {threads['rss_mb'] / prefork['rss_mb']:.2f}x its memory."
    )
    return section


def main() -> int:
    return run_scenario(measure, __doc__)


if __name__ == "__main__":
    sys.exit(main())
