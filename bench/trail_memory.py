"""What the trails (worker/trail.py) cost: memory per signup, and time on the receiver.

Sends N signups (each delivered twice, as senders do) through the receiver to a real
worker and the emulator, at default settings, waits until all are published, then adds
up MEMORY USAGE of every trail and search-term key, in a Redis of its own, and, for
comparison in the same run, of the customers stream and of the dedupe marks. Then it
times the receiver's queueing step (`Enqueuer.enqueue_once`, which writes the trail's
first line) with trails on and off (TRAIL_TTL=0), alternating, in the same run.

    .venv/bin/python bench/trail_memory.py [N]      # default 500
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid

import redis

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tests.support import SIGNUP_WEBHOOK_SECRET, RedisServer, clean_env, sign_standard
from webhooks import create_app
from worker.devtools.emulator import EmulatorServer
from worker.settings import Settings
from worker.vault import Vault

KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


def memory(client: redis.Redis, pattern: str) -> tuple[int, int]:
    """(keys, bytes) of the keys matching `pattern` (a benchmark may scan; the product never)."""
    keys = list(client.scan_iter(pattern, count=1000))
    return len(keys), sum(client.memory_usage(k, samples=0) or 0 for k in keys)


def enqueue_cost(url: str, n: int = 2000, rounds: int = 3) -> dict[str, float]:
    """Microseconds per `enqueue_once` with and without the trail, best of `rounds`."""
    from worker.queue import Enqueuer
    from worker.spec import ComponentSpec
    from worker.work import Work

    client = redis.Redis.from_url(url)
    best: dict[str, float] = {}
    for r in range(rounds):
        for label, ttl in (("trail on (default)", 259200), ("trail off (TRAIL_TTL=0)", 0)):
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            enqueuer = Enqueuer(
                client, Settings(redis_url=url, stream_prefix=prefix, trail_ttl=ttl)
            )
            works = [
                Work.for_component(
                    ComponentSpec.parse({"component": "stripe.createCustomer", "trigger": "signup",
                                         "Body": {"email": f"u{i}@example.com",
                                                  "metadata": {"user_id": f"u{r}-{i}"}}}),
                    "signup", f"msg_{r}_{i}",
                )
                for i in range(n)
            ]  # fmt: skip
            started = time.perf_counter()
            for work in works:
                enqueuer.enqueue_once(work)
            spent = (time.perf_counter() - started) / n * 1e6
            best[label] = min(best.get(label, spent), spent)
            leftover = list(client.scan_iter(f"{prefix}:*", count=1000))
            client.delete(*leftover)
    return best


def main(n: int = 500) -> int:
    server = RedisServer().start()  # a Redis of its own: nothing else in the figures
    url = server.url
    prefix = "stripe"
    emulator = EmulatorServer("127.0.0.1", 0).start()
    env = clean_env(REDIS_URL=url, STREAM_PREFIX=prefix, STRIPE_SECRET_KEY=KEY,
               STRIPE_API_BASE=emulator.url, SIGNUP_WEBHOOK_SECRET=SIGNUP_WEBHOOK_SECRET,
               WORKER_METRICS_PORT="0")  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker", "worker", "--loglevel=WARNING"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    settings = Settings(redis_url=url, stream_prefix=prefix, stripe_api_base=emulator.url)
    client = redis.Redis.from_url(url)
    try:
        app = create_app(settings, vault=Vault(None, env)).test_client()
        for i in range(n):
            body = json.dumps(
                {
                    "type": "user.created",
                    "data": {
                        "user_id": f"user_2b{i:08d}",
                        "email": f"jenny.rosen+{i}@example.com",
                        "name": "Jenny Rosen",
                    },
                }
            )
            for _ in range(2):
                app.post("/webhooks/signup", data=body, headers=sign_standard(body, f"msg_{i}"))
        deadline = time.monotonic() + 300
        while client.xlen(settings.keys.stream("customers")) < n or client.zcard(
            settings.keys.ledger
        ):
            if time.monotonic() > deadline:
                print("timed out waiting for the worker", file=sys.stderr)
                return 1
            time.sleep(0.2)
        trails = memory(client, f"{prefix}:trail:*")
        terms = memory(client, f"{prefix}:find:*")
        stream = client.memory_usage(settings.keys.stream("customers"), samples=0) or 0
        seen = memory(client, f"{prefix}:seen:*")
        version = client.info("server")["redis_version"]
        print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python "
              f"{platform.python_version()}, Redis {version}")  # fmt: skip
        print(f"{n} signups, each delivered twice, all published")
        print(f"{'what':34} {'keys':>6} {'bytes/signup':>13}")
        for what, keys, total in (
            ("trails (trail:<work id>)", trails[0], trails[1]),
            ("search terms (find:<digest>)", terms[0], terms[1]),
            ("trail + terms", trails[0] + terms[0], trails[1] + terms[1]),
            ("for comparison: customers stream", 1, stream),
            ("for comparison: dedupe marks", seen[0], seen[1]),
        ):
            print(f"{what:34} {keys:>6} {total / n:>13.0f}")
        os.killpg(worker.pid, 15)  # the timing below runs on a quiet machine
        worker.wait(30)
        print("receiver's queueing step, one client, best of 3 rounds of 2,000:")
        for label, micros in enqueue_cost(url).items():
            print(f"  {label:32} {micros:8.0f} us per webhook")
        return 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 15)
            worker.wait(30)
        emulator.stop()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("signups", type=int, nargs="?", default=500)
    sys.exit(main(parser.parse_args().signups))
