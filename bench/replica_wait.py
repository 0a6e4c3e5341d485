"""What REDIS_MIN_REPLICAS=1 costs the receiver: req/s and latency with 0 and 1.

    python bench/replica_wait.py              # 8 s per measurement
    python bench/replica_wait.py --seconds 3

A master, one replica and three sentinels on 127.0.0.1 (tests/support/sentinel.py); the
receiver (`stripe-worker web`, 2 gunicorn workers) on the sentinel URL, loaded with
distinct signed signups by 4 client processes (bench/harness.py's closed loop), then the
enqueue step alone (Enqueuer.enqueue_once in one thread, no HTTP). Each setting is measured
twice, interleaved (0, 1, 0, 1), on the same cluster.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

from bench.harness import (  # noqa: E402
    KEY,
    SIGNUP_WHSEC,
    WHSEC,
    Section,
    load,
    machine,
    render,
    signup_request,
)
from tests.support import WebProcess, clean_env, wait_http  # noqa: E402
from tests.support.sentinel import MASTER_NAME, SentinelCluster  # noqa: E402
from worker.connections import redis_client  # noqa: E402
from worker.queue import Enqueuer  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.spec import ComponentSpec  # noqa: E402
from worker.work import Work  # noqa: E402


def receiver_rps(cluster: SentinelCluster, replicas: int, seconds: float) -> dict:
    env = clean_env(
        REDIS_URL=cluster.url,
        REDIS_SENTINEL_MASTER=MASTER_NAME,
        REDIS_MIN_REPLICAS=str(replicas),
        STREAM_PREFIX=f"rw{uuid.uuid4().hex[:6]}",
        STRIPE_SECRET_KEY=KEY,
        STRIPE_WEBHOOK_SECRET=WHSEC,
        SIGNUP_WEBHOOK_SECRET=SIGNUP_WHSEC,
        PYTHONPATH=str(ROOT),
    )
    logdir = Path(tempfile.mkdtemp(prefix="replica-wait-"))
    web = WebProcess(env, logdir / "web.log")
    try:
        wait_http(f"{web.url}/readyz")
        return load(web.port, signup_request, seconds, per_client=20_000)
    finally:
        web.stop()
        shutil.rmtree(logdir, ignore_errors=True)


def enqueue_rate(cluster: SentinelCluster, replicas: int, seconds: float) -> dict:
    settings = Settings(
        redis_url=cluster.url,
        redis_sentinel_master=MASTER_NAME,
        redis_min_replicas=replicas,
        stream_prefix=f"rw{uuid.uuid4().hex[:6]}",
    )
    enqueuer = Enqueuer(redis_client(settings), settings)
    spec = ComponentSpec.parse(
        {"component": "stripe.createCustomer", "trigger": "true", "Body": {"email": "b@x.test"}}
    )
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        enqueuer.enqueue_once(Work.for_component(spec, "bench", f"d{n}"))
        n += 1
    elapsed = time.perf_counter() - started
    return {"per_s": n / elapsed, "us": elapsed / n * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    cluster = SentinelCluster().start()
    section = Section("What REDIS_MIN_REPLICAS=1 costs the receiver", "bench/replica_wait.py")
    try:
        rows = []
        for replicas in (0, 1, 0, 1):
            r = receiver_rps(cluster, replicas, args.seconds)
            rows.append(
                (
                    replicas,
                    f"{r['rps']:.0f}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    r["statuses"],
                )
            )
        section.table(("REDIS_MIN_REPLICAS", "receiver req/s", "p50 ms", "p99 ms", "answers"), rows)
        rows = []
        for replicas in (0, 1, 0, 1):
            e = enqueue_rate(cluster, replicas, args.seconds / 2)
            rows.append((replicas, f"{e['per_s']:.0f}", f"{e['us']:.0f}"))
        section.table(("REDIS_MIN_REPLICAS", "enqueue_once/s (one thread)", "µs each"), rows)
    finally:
        cluster.stop()
    print(render([section]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
