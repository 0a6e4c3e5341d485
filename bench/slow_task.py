"""A 60 s task on a live worker is never handed to a second worker.

    python bench/slow_task.py            # about 70 s

Two workers at default settings but STRIPE_TIMEOUT=90 (so one Stripe call may take the
60 s the emulator is told to take); one signup. Prints how many calls reached Stripe,
the entries, and how often the message's lease was renewed meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

from bench.fault_run import KEY  # noqa: E402
from tests.support import Process, RedisServer, clean_env, cli, settled, wait_for  # noqa: E402
from worker.devtools.emulator import EmulatorServer  # noqa: E402
from worker.queue import Enqueuer  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.spec import ComponentSpec  # noqa: E402
from worker.work import Work  # noqa: E402


def main(seconds: float = 60.0) -> int:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    own_redis = RedisServer().start()
    url = own_redis.url
    emulator = EmulatorServer("127.0.0.1", 0).start()
    emulator.state.set_faults({"latency_ms": seconds * 1000})
    env = clean_env(
        REDIS_URL=url,
        STRIPE_API_BASE=emulator.url,
        STRIPE_SECRET_KEY=KEY,
        STRIPE_TIMEOUT=seconds + 30,
        PYTHONPATH=ROOT,
    )
    logdir = Path(tempfile.mkdtemp(prefix="slow-task-"))
    workers = [Process(cli("worker"), env, logdir / f"worker-{i}.log").start() for i in (1, 2)]
    client = redis.Redis.from_url(url, decode_responses=True)
    settings = Settings(redis_url=url)
    keys = settings.keys
    try:
        wait_for(lambda: client.zcard(keys.workers) >= 2, timeout=60, interval=0.1)
        spec = ComponentSpec.parse(
            {
                "component": "stripe.createCustomer",
                "trigger": "true",
                "Body": {"email": "slow@example.com"},
            }
        )
        Enqueuer(client, settings).enqueue_once(Work.for_component(spec, "cli", "slow-1"))
        started, renewals, last = time.monotonic(), 0, None
        while not client.xlen(keys.stream("customers")):
            for _tag, score in client.zrange(keys.unacked_index, 0, -1, withscores=True):
                renewals += last is not None and score != last
                last = score
            time.sleep(0.2)
        took = time.monotonic() - started
        # A second run, had there been one, would hold the message: wait until none does.
        wait_for(lambda: settled(client, settings), timeout=seconds + 30, interval=0.2)
        stats = emulator.state.stats
        print(
            json.dumps(
                {
                    "task_seconds": round(took, 1),
                    "stripe_calls": stats["requests"],
                    "customers_created": stats["created"]["test"],
                    "entries": client.xlen(keys.stream("customers")),
                    "lease_renewals_seen": renewals,
                    "workers_alive": client.zcard(keys.workers),
                },
                indent=2,
            )
        )
        ok = stats["requests"] == 1 and client.xlen(keys.stream("customers")) == 1
        print("OK: run once, on one worker" if ok else f"FAILED (logs in {logdir})")
        if ok:  # the logs are kept only to read a failure
            shutil.rmtree(logdir, ignore_errors=True)
        return 0 if ok else 1
    finally:
        for proc in workers:
            proc.stop(30)
        own_redis.stop()
        emulator.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the task's Stripe call")
    sys.exit(main(parser.parse_args().seconds))
