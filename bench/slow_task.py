"""A 60 s task on a live worker is never handed to a second worker.

    python bench/slow_task.py            # about 70 s

Two workers at default settings but STRIPE_TIMEOUT=90 (so one Stripe call may take the
60 s the emulator is told to take); one signup. Prints how many calls reached Stripe,
the entries, and how often the message's lease was renewed meanwhile.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fault_run import KEY, Processes, start_redis  # noqa: E402
from worker.devtools.emulator import EmulatorServer  # noqa: E402
from worker.devtools.local import free_port  # noqa: E402
from worker.keys import Keys  # noqa: E402
from worker.queue import Enqueuer  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.spec import ComponentSpec  # noqa: E402
from worker.work import Work  # noqa: E402


def main(seconds: float = 60.0) -> int:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    port = free_port()
    redis_proc = start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    emulator = EmulatorServer("127.0.0.1", 0).start()
    emulator.state.set_faults({"latency_ms": seconds * 1000})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE", "REDIS"))}
    env.update(
        REDIS_URL=url,
        STRIPE_API_BASE=emulator.url,
        STRIPE_SECRET_KEY=KEY,
        STRIPE_TIMEOUT=str(seconds + 30),
        PYTHONPATH=str(ROOT),
    )
    import tempfile

    procs = Processes(env, Path(tempfile.mkdtemp(prefix="slow-task-")))
    workers = [procs.start("worker"), procs.start("worker")]
    client = redis.Redis.from_url(url, decode_responses=True)
    keys = Keys("stripe")
    try:
        while client.zcard(keys.workers) < 2:
            time.sleep(0.1)
        spec = ComponentSpec.parse(
            {
                "component": "stripe.createCustomer",
                "trigger": "true",
                "Body": {"email": "slow@example.com"},
            }
        )
        Enqueuer(client, Settings(redis_url=url)).enqueue_once(
            Work.for_component(spec, "cli", "slow-1")
        )
        started, renewals, last = time.monotonic(), 0, None
        while not client.xlen(keys.stream("customers")):
            for _tag, score in client.zrange(keys.unacked_index, 0, -1, withscores=True):
                renewals += last is not None and score != last
                last = score
            time.sleep(0.2)
        took = time.monotonic() - started
        time.sleep(3)  # a second run, had there been one, would show now
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
        print("OK: run once, on one worker" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        for proc in workers:
            Processes.stop(proc)
        redis_proc.kill()
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
