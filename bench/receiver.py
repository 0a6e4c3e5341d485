"""The receiver next to its ceiling: `stripe-worker web` answering verified, queued Stripe
events, against a trivial route of the same server measured by the same client.

    .venv/bin/python bench/receiver.py           # 10 s a row
    .venv/bin/python bench/receiver.py --quick   # 4 s a row

Two load generators: 4 keep-alive Python client processes, and wrk (Debian's package, when
installed: it costs far less than the Python one) for four gunicorn set-ups. The Redis round
trip the receiver makes per event is measured beside it (PING on a raw socket).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.harness import (
    REDIS_URL,
    WRK_SCRIPT,
    Section,
    Stack,
    health_request,
    load,
    pct,
    run_scenario,
    stripe_request,
    wrk,
)

SETUPS = ((2, 1), (4, 1), (2, 4), (2, 0))  # (workers, threads); 0 threads: gevent (`web`)


def python_clients(seconds: float) -> dict:
    stack = Stack(f"benchrx{os.getpid()}")
    try:
        at_rest = stack.rss_mb(stack.procs[0])
        ceiling = load(stack.port, health_request, seconds)
        ours = load(stack.port, stripe_request, seconds)
        return {
            "ceiling": ceiling,
            "stripe": ours,
            "queued": stack.redis.llen(f"{stack.prefix}:q:celery"),
            "web_rss_mb": stack.rss_mb(stack.procs[0]),
            "web_rss_rest_mb": at_rest,
        }
    finally:
        stack.stop()


def with_wrk(seconds: float, workers: int, threads: int) -> dict:
    """`web` (gevent workers) when threads is 0, else plain gunicorn with gthread threads."""
    stack = Stack(f"benchwrk{os.getpid()}{workers}{threads}", web=False)
    folder = Path(tempfile.mkdtemp(prefix="wrk-"))
    try:
        url = (stack.gthread(workers, threads) if threads else stack.web(workers)).url
        with open(folder / "requests.txt", "w") as f:
            for i in range(int(seconds * 6000)):
                _m, _p, body, headers = stripe_request(i, f"wrk{os.getpid()}{workers}{threads}")
                f.write(f"{body.decode()}\t{headers['Stripe-Signature']}\n")
        (folder / "replay.lua").write_text(WRK_SCRIPT)
        ceiling = wrk(url + "/healthz", seconds)
        env = dict(os.environ, REQUESTS_FILE=str(folder / "requests.txt"), WRK_THREADS="2")
        return {"ceiling": ceiling, "stripe": wrk(url, seconds, str(folder / "replay.lua"), env)}
    finally:
        stack.stop()
        shutil.rmtree(folder, ignore_errors=True)


def ping_us(n: int = 2000) -> float:
    """Median round trip of PING on a raw socket to the Redis the receiver uses, in µs."""
    url = urlsplit(REDIS_URL)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379)) as s:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(b"PING\r\n")
            s.recv(16)
            times.append(time.perf_counter() - t0)
    return pct(times, 50) * 1e6


def measure(quick: bool) -> Section:
    seconds = 4 if quick else 10
    rx = python_clients(seconds)
    c, s = rx["ceiling"], rx["stripe"]
    section = Section(
        "Receiver: `stripe-worker web` (2 gevent workers), 4 keep-alive Python clients",
        "bench/receiver.py",
    )
    section.table(
        ("route", "req/s", "p50 ms", "p99 ms", "answers"),
        [
            (
                "GET /healthz (ceiling: trivial JSON)",
                f"{c['rps']:,.0f}",
                f"{c['p50_ms']:.2f}",
                f"{c['p99_ms']:.2f}",
                c["statuses"],
            ),
            (
                "POST /webhooks/stripe, verified and queued",
                f"{s['rps']:,.0f}",
                f"{s['p50_ms']:.2f}",
                f"{s['p99_ms']:.2f}",
                s["statuses"],
            ),
        ],
    )
    section.say(
        f"The receiver reaches **{s['rps'] / c['rps']:.0%} of the ceiling**; "
        f"{rx['queued']:,} task messages were queued. Web RSS (master + 2 workers): "
        f"{rx['web_rss_rest_mb']:.0f} MB at rest, {rx['web_rss_mb']:.0f} MB after the load. "
        f"Each event costs one Redis round trip (a script that dedupes, queues and records "
        f"the work); a bare PING on this machine's loopback took {ping_us():.0f} µs "
        f"(median) in this run."
    )
    if not shutil.which("wrk"):
        section.say("(wrk is not installed: `apt-get install wrk` adds the same with wrk)")
        return section
    rows, ratios = [], {}
    for workers, threads in SETUPS:
        w = with_wrk(seconds, workers, threads)
        kind = {0: f"{workers} gevent (`web`)", 1: f"{workers} sync"}.get(
            threads, f"{workers} gthread x {threads}"
        )
        ratios[kind] = w["stripe"]["rps"] / w["ceiling"]["rps"]
        rows.append(
            (
                kind,
                f"{w['ceiling']['rps']:,.0f}",
                f"{w['stripe']['rps']:,.0f}",
                f"{ratios[kind]:.0%}",
                f"{w['stripe']['p50_ms']:.2f}",
                f"{w['stripe']['p99_ms']:.2f}",
            )
        )
    section.say(
        "The same with wrk (2 threads, 16 connections), for four gunicorn set-ups (each row: "
        "the same gunicorn serving both routes):"
    )
    section.table(
        (
            "gunicorn",
            "trivial route req/s",
            "verified and queued req/s",
            "ratio",
            "p50 ms",
            "p99 ms",
        ),
        rows,
    )
    best = max(ratios, key=ratios.__getitem__)
    section.say(
        f"With wrk the default (2 gevent workers, WEB_CONCURRENCY) reaches "
        f"{ratios['2 gevent (`web`)']:.0%} of its ceiling; the best ratio in this run was "
        f"{best}'s, {ratios[best]:.0%}."
    )
    return section


def main() -> int:
    return run_scenario(measure, __doc__)


if __name__ == "__main__":
    sys.exit(main())
