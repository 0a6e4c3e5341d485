"""Stripe's rate limit at defaults: bursts against the emulator's 25/s and 100/s limits,
the limit lowered mid-run, and signups during a backlog of events.

    python bench/ratelimit_run.py            # about 10 minutes; prints rows for docs/benchmarks.md
    python bench/ratelimit_run.py --quick    # smaller bursts, same sections
    python bench/ratelimit_run.py --only c   # one section (a, b, c, d or e)

The worker runs with default settings (pool, concurrency, pace, retries); only the key,
the emulator's limit and its 300 ms latency change. The emulator runs in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

from bench.harness import REDIS_URL, Stack, drain, machine  # noqa: E402
from tasks.ratelimit import key_id  # noqa: E402
from webhooks.signup import signup_component  # noqa: E402
from worker.queue import Enqueuer  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.work import Work  # noqa: E402

LIVE_KEY = "sk_live_bench" + "0" * 20
LATENCY_MS = 300.0


def default_stack(name: str, api_key: str | None = None) -> Stack:
    """A worker-only stack at default settings, the emulator at 300 ms and Stripe's limits."""
    stack = Stack(f"benchrl{name}{os.getpid()}", LATENCY_MS, web=False, our_limit=None)
    for knob in ("WORKER_POOL", "WORKER_CONCURRENCY", "RETRY_BASE_DELAY", "RETRY_MAX_DELAY"):
        stack.env.pop(knob, None)  # the defaults are the product
    if api_key:
        stack.env["STRIPE_SECRET_KEY"] = api_key
    stack.emulator.state.set_faults({"rate_limit": "stripe"})  # 25/s test, 100/s live
    return stack


def enqueuer(stack: Stack) -> Enqueuer:
    settings = Settings(redis_url=REDIS_URL, stream_prefix=stack.prefix)
    return Enqueuer(redis.Redis.from_url(REDIS_URL), settings)


def queue_signups(stack: Stack, n: int, tag: str = "u") -> None:
    q = enqueuer(stack)
    for i in range(n):
        _u, spec = signup_component(
            {"type": "user.created", "data": {"user_id": f"{tag}{i}", "email": f"{tag}{i}@x.io"}}
        )
        q.enqueue_once(Work.for_component(spec, "signup", f"msg_{tag}{i}"))


def queue_events(stack: Stack, n: int, mode: str) -> None:
    """`n` Stripe events naming customers that exist, so each is one Get Customer."""
    q = enqueuer(stack)
    for i in range(n):
        customer = stack.emulator.state.create_customer(mode, {"email": f"old{i}@x.io"})
        event = {
            "id": f"evt_bench_{i}",
            "object": "event",
            "type": "invoice.paid",
            "livemode": mode == "live",
            "data": {"object": {"object": "invoice", "customer": customer["id"]}},
        }
        q.enqueue_once(Work.for_event(event))


class Sampler:
    """Worker RSS (peak) and the emulator's counters, sampled every half second."""

    def __init__(self, stack: Stack, worker) -> None:
        self.stack, self.worker = stack, worker
        self.rss_peak = 0.0
        self.samples: list[tuple[float, int, int]] = []  # (t, requests, 429s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(OSError, ValueError):  # the worker just exited
                self.rss_peak = max(self.rss_peak, self.stack.rss_mb(self.worker))
            stats = self.stack.emulator.state.stats
            limited = sum(stats["rate_limited"].values())
            self.samples.append((time.perf_counter(), stats["requests"], limited))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def burst(name: str, n: int, api_key: str | None, limit: int) -> dict:
    """(a), (b): `n` signups queued at once, drained at defaults against `limit`/s."""
    stack = default_stack(name, api_key)
    try:
        queue_signups(stack, n)
        worker = stack.worker()
        sampler = Sampler(stack, worker)
        drain(stack, 1, timeout=120)
        t0, req0 = time.perf_counter(), stack.emulator.state.stats["requests"]
        cpu0 = cpu_seconds(worker.pid)
        seconds = drain(stack, n, timeout=n / limit * 3 + 120)
        cpu = cpu_seconds(worker.pid) - cpu0
        sampler.stop()
        stats = stack.emulator.state.stats
        calls = stats["requests"] - req0
        limited = sum(stats["rate_limited"].values())
        # The steady middle (a fifth in from either end): no start-up, no tail.
        mid = sampler.samples[len(sampler.samples) // 5 : -len(sampler.samples) // 5 or None]
        steady = (mid[-1][1] - mid[0][1]) / (mid[-1][0] - mid[0][0]) if len(mid) > 1 else 0.0
        return {
            "steady_calls_per_s": steady,
            "n": n,
            "customers": stats["created"]["live" if api_key else "test"],
            "errors": stack.redis.xlen(f"{stack.prefix}:errors"),
            "429s": limited,
            "calls": stats["requests"],
            "share_429": limited / max(1, stats["requests"]),
            "calls_per_s": calls / (time.perf_counter() - t0),
            "customers_per_s": (n - 1) / seconds,
            "rss_mb": sampler.rss_peak,
            "cpu_ms_per_call": cpu / max(1, calls) * 1000,
            "load": os.getloadavg()[0],
        }
    finally:
        stack.stop()


def lowered(n: int, before_s: float, after_s: float) -> dict:
    """(c): test key at 25/s, then the emulator's limit lowered to 10/s mid-run."""
    stack = default_stack("low")
    pace_key = f"{stack.prefix}:ratelimit:{key_id(stack.env['STRIPE_SECRET_KEY'])}"
    try:
        queue_signups(stack, n)
        worker = stack.worker()
        sampler = Sampler(stack, worker)
        drain(stack, 1, timeout=120)
        time.sleep(before_s)
        stats = stack.emulator.state.stats
        t_change, req_change, lim_change = time.perf_counter(), stats["requests"], 0
        lim_change = stats["rate_limited"]["test"]
        stack.emulator.state.set_faults({"rate_limit": {"test": 10}})
        adapted = None
        rates = []
        while time.perf_counter() - t_change < after_s:
            rate = float(stack.redis.hget(pace_key, "rate") or 0)
            rates.append(rate)
            if adapted is None and 0 < rate <= 10:
                adapted = time.perf_counter() - t_change
            time.sleep(0.1)
        sampler.stop()
        stats = stack.emulator.state.stats
        calls = stats["requests"] - req_change
        limited = stats["rate_limited"]["test"] - lim_change
        # The steady part: from 10 s after the change to the end.
        steady = [s for s in sampler.samples if s[0] >= t_change + 10]
        s_calls = steady[-1][1] - steady[0][1]
        s_429 = steady[-1][2] - steady[0][2]
        s_secs = steady[-1][0] - steady[0][0]
        return {
            "adapt_s": adapted,
            "calls_after": calls,
            "429s_after": limited,
            "429s_before": lim_change,
            "steady_calls_per_s": (s_calls - s_429) / s_secs,
            "steady_429_share": s_429 / max(1, s_calls),
            "mean_rate": sum(rates[len(rates) // 3 :]) / max(1, len(rates) - len(rates) // 3),
            "customers": stats["created"]["test"],
            "errors": stack.redis.xlen(f"{stack.prefix}:errors"),
        }
    finally:
        stack.stop()


def backlog(events: int, signups: int, every_s: float) -> dict:
    """(d): `events` queued enrichments (Get Customer each), then signups one by one."""
    stack = default_stack("backlog")
    try:
        q = enqueuer(stack)
        queue_events(stack, events, "test")
        worker = stack.worker()
        drain(stack, 1, stream="events", timeout=120)
        time.sleep(5)  # well into the backlog
        latencies = []
        customers_key = f"{stack.prefix}:customers"
        for i in range(signups):
            _u, spec = signup_component(
                {"type": "user.created", "data": {"user_id": f"new{i}", "email": f"n{i}@x.io"}}
            )
            t0 = time.perf_counter()
            q.enqueue_once(Work.for_component(spec, "signup", f"msg_new{i}"))
            while stack.redis.xlen(customers_key) <= i:
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError("a signup waited over 120 s")
                time.sleep(0.01)
            latencies.append(time.perf_counter() - t0)
            time.sleep(max(0.0, every_s - latencies[-1]))
        left = stack.redis.llen(f"{stack.prefix}:q:celery")
        done = stack.redis.xlen(f"{stack.prefix}:events")
        rss = stack.rss_mb(worker)
        latencies.sort()
        return {
            "signups": signups,
            "p50_s": latencies[len(latencies) // 2],
            "max_s": latencies[-1],
            "events_done": done,
            "events_left": left,
            "errors": stack.redis.xlen(f"{stack.prefix}:errors"),
            "rss_mb": rss,
        }
    finally:
        stack.stop()


def both(signups: int, events: int) -> dict:
    """(e): live key, `signups` creates and `events` Get Customers queued together: each
    endpoint's 25/s at once under the global 100/s (docs.stripe.com/rate-limits)."""
    stack = default_stack("both", LIVE_KEY)
    try:
        state = stack.emulator.state
        queue_events(stack, events, "live")
        created0 = state.stats["created"]["live"]
        queue_signups(stack, signups)
        req0 = state.stats["requests"]
        t0 = time.perf_counter()
        worker = stack.worker()
        drain(stack, events, stream="events", timeout=events / 10 + 120)
        drain(stack, signups, timeout=signups / 10 + 120)
        seconds = time.perf_counter() - t0
        stats = state.stats
        calls = stats["requests"] - req0
        # Per endpoint, from the entries' own times (a stream id is its ms timestamp):
        # each endpoint's results over the time from the first result of either.
        ends = {name: entry_times(stack, name) for name in ("customers", "events")}
        first = min(times[0] for times in ends.values())
        per = {name: len(t) / max(1e-3, t[-1] - first) for name, t in ends.items()}
        last = max(times[-1] for times in ends.values())
        return {
            "seconds": seconds,
            "calls_per_s": (signups + events) / seconds,
            "drain_calls_per_s": (signups + events - 1) / max(1e-3, last - first),
            "creates_per_s": per["customers"],
            "retrieves_per_s": per["events"],
            "customers": stats["created"]["live"] - created0,
            "events_done": stack.redis.xlen(f"{stack.prefix}:events"),
            "429s": stats["rate_limited"]["live"],
            "by": dict(stats["rate_limited_by"]),
            "share_429": stats["rate_limited"]["live"] / max(1, calls),
            "errors": stack.redis.xlen(f"{stack.prefix}:errors"),
            "rss_mb": stack.rss_mb(worker),
            "load": os.getloadavg()[0],
        }
    finally:
        stack.stop()


def entry_times(stack: Stack, stream: str) -> list[float]:
    """The times (s, Redis's clock) the entries of `stream` were added, oldest first."""
    ids = [entry_id for entry_id, _ in stack.redis.xrange(f"{stack.prefix}:{stream}")]
    return [int(entry_id.split("-")[0]) / 1000 for entry_id in ids]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("a", "b", "c", "d", "e"))
    args = parser.parse_args()
    n = 1000 if args.quick else 5000
    print(f"Measured by `python bench/ratelimit_run.py` on: {machine()}.\n", flush=True)
    if args.only in (None, "a", "b"):
        print(
            "| run | customers | errors | 429s (share) | Stripe calls/s: all (steady middle) "
            "| limit | worker RSS MB | worker CPU ms/call | load avg |"
            "\n|---|---|---|---|---|---|---|---|---|",
            flush=True,
        )
        for label, key, limit, section in (
            (f"(a) {n} signups, test key", None, 25, "a"),
            (f"(b) {n} signups, live key", LIVE_KEY, 25, "b"),  # Create Customer's 25/s
        ):
            if args.only not in (None, section):
                continue
            r = burst(section, n, key, limit)
            print(
                f"| {label} | {r['customers']} of {n} | {r['errors']} | {r['429s']} "
                f"({r['share_429']:.1%}) | {r['calls_per_s']:.1f} "
                f"({r['steady_calls_per_s']:.1f}) | {limit}/s | {r['rss_mb']:.0f} | "
                f"{r['cpu_ms_per_call']:.1f} | {r['load']:.1f} |",
                flush=True,
            )
    if args.only in (None, "c"):
        before, after = 20, (40 if args.quick else 90)
        r = lowered(int(before * 25 + after * 12 + 200), before_s=before, after_s=after)
        print(
            f"\n(c) limit 25/s -> 10/s mid-run: the pace fell under 10/s in "
            f"{r['adapt_s']:.1f} s; 429s after the change {r['429s_after']} of "
            f"{r['calls_after']} calls ({r['429s_after'] / max(1, r['calls_after']):.1%}); "
            f"from 10 s on: {r['steady_calls_per_s']:.1f} successful calls/s, 429 share "
            f"{r['steady_429_share']:.1%}, mean pace {r['mean_rate']:.1f}/s; 429s before "
            f"the change {r['429s_before']}; errors {r['errors']}.",
            flush=True,
        )
    if args.only in (None, "d"):
        r = backlog(n, signups=20, every_s=2.0)
        print(
            f"\n(d) {r['signups']} signups, one every 2 s, during a {n}-event backlog (test "
            f"key, 25/s): signup -> customer p50 {r['p50_s']:.2f} s, max {r['max_s']:.2f} s; "
            f"{r['events_done']} events done, {r['events_left']} still queued; errors "
            f"{r['errors']}; worker RSS {r['rss_mb']:.0f} MB. Queued behind the backlog "
            f"instead, a signup would wait about {r['events_left'] / 24.25:.0f} s (what is "
            f"left / 24.25 per s).",
            flush=True,
        )
    if args.only in (None, "e"):
        k = 500
        r = both(k, k)
        print(
            f"\n(e) live key, {k} signups and {k} events queued together (Create and Get "
            f"Customer, 25/s each, 100/s global): {r['calls_per_s']:.1f} calls/s overall "
            f"({r['seconds']:.1f} s from the worker's start; {r['drain_calls_per_s']:.1f}/s "
            f"from its first result: creates {r['creates_per_s']:.1f}/s, retrieves "
            f"{r['retrieves_per_s']:.1f}/s); {r['customers']} customers, {r['events_done']} "
            "events; "
            f"429s {r['429s']} ({r['share_429']:.1%}; by limiter {r['by']}); errors "
            f"{r['errors']}; worker RSS {r['rss_mb']:.0f} MB; load avg {r['load']:.1f}.",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
