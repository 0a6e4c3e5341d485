"""End to end: a signup posted to the receiver -> its entry on stripe:customers, at a steady
rate, emulator at 0 ms; latency percentiles against the targets.

    .venv/bin/python bench/end_to_end.py           # 1,000 signups at 100/s
    .venv/bin/python bench/end_to_end.py --quick   # 300
"""

from __future__ import annotations

import os
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import redis

from bench.harness import Section, Stack, pct, run_scenario, signup_request
from tests.support import wait_for

RATE = 100  # signups a second
TARGETS_MS = {"p50": 15, "p99": 60}


def latencies(n: int, rate: float) -> list[float]:
    stack = Stack(f"benche2e{os.getpid()}")
    try:
        worker = stack.worker()
        wait_for(lambda: " ready." in worker.log(), timeout=60, interval=0.1)
        reqs = [signup_request(i, f"{os.getpid()}") for i in range(n)]
        sent: dict[str, float] = {}
        done: dict[str, float] = {}
        key = f"{stack.prefix}:customers"

        def reader() -> None:
            last = "$"
            r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
            while len(done) < n:
                for _s, items in r.xread({key: last}, block=1000, count=500) or []:
                    for entry_id, fields in items:
                        last = entry_id
                        done[fields["source_id"]] = time.perf_counter()

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        time.sleep(0.2)  # the reader's first XREAD is in before the first signup
        conn = HTTPConnection("127.0.0.1", stack.port, timeout=30)
        t0 = time.perf_counter()
        for i, (method, path, body, headers) in enumerate(reqs):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent[headers["webhook-id"]] = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            conn.getresponse().read()
        thread.join(120)
        return [done[k] - sent[k] for k in sent if k in done]
    finally:
        stack.stop()


def measure(quick: bool) -> Section:
    n = 300 if quick else 1000
    lat = latencies(n, RATE)
    got = {p: pct(lat, int(p[1:])) * 1e3 for p in ("p50", "p95", "p99")}
    section = Section(
        "End to end: signup posted -> entry on stripe:customers (emulator at 0 ms)",
        "bench/end_to_end.py",
    )
    section.table(
        ("signups", "rate", "p50 ms", "p95 ms", "p99 ms"),
        [(f"{len(lat)} of {n}", f"{RATE}/s", *(f"{got[p]:.1f}" for p in got))],
    )
    section.say(
        "Targets: "
        + ", ".join(
            f"{p} <= {t} ms ({'met' if got[p] <= t else 'not met'} in this run)"
            for p, t in TARGETS_MS.items()
        )
        + "."
    )
    return section


def main() -> int:
    return run_scenario(measure, __doc__)


if __name__ == "__main__":
    sys.exit(main())
