"""The fault run: nothing lost, nothing twice, under crashes, outages and retry storms.

    python bench/fault_run.py                 # 1,000 signups (a few minutes)
    python bench/fault_run.py --signups 100   # the size the test suite runs

N distinct signups, each delivered 3 times (two of them at once) through a real
gunicorn receiver, while the Stripe emulator fails 30% of calls with 500 or 429, the
worker is killed with SIGKILL every ~100 tasks and restarted, the receiver is restarted
once, and Redis stops answering for a few seconds in the middle (SIGSTOP: connections
hang as in a network partition; the receiver answers 503 and the sender retries, as
Stripe does). At the end it counts, from the emulator and from Redis: customers
created, stream entries, errors and duplicates, and exits 1 unless every signup became
exactly one customer and one entry.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
import requests
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import wait_http  # noqa: E402
from worker.devtools.emulator import EmulatorServer  # noqa: E402
from worker.devtools.local import free_port  # noqa: E402

SECRET = "whsec_" + "ZmF1bHQtcnVuLXNpZ251cC1zZWNyZXQtMDAwMQ=="
KEY = "sk_test_faultrun" + "0" * 16


@dataclass
class Report:
    signups: int
    customers_created: int = 0
    entries: int = 0
    distinct_customers_in_entries: int = 0
    errors: int = 0
    duplicates: int = 0
    unanswered: int = 0
    deliveries: int = 0
    answered_503: int = 0
    worker_kills: int = 0
    receiver_restarts: int = 0
    redis_outage_s: float = 0.0
    emulator_faults: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        n = self.signups
        return (
            self.customers_created,
            self.entries,
            self.distinct_customers_in_entries,
            self.errors,
            self.duplicates,
            self.unanswered,
        ) == (n, n, n, 0, 0, 0)


class Processes:
    """The project's processes, started as an operator would, in their own groups."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.count = 0

    def start(self, *args: str) -> subprocess.Popen:
        self.count += 1
        log = open(self.logdir / f"{args[0]}-{self.count}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @staticmethod
    def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        proc.wait(30)


def start_redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tempfile.mkdtemp(prefix="fault-redis-"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def diagnose(client: redis.Redis, entries: list[dict], signups: int) -> list[str]:
    """Where the work of each signup without an entry stopped."""
    have = {f["idempotency_key"] for f in entries}
    notes = [
        f"queue {client.llen('stripe:q:celery')}, unacked "
        f"{client.hlen('stripe:q:unacked')}, unacked_index "
        f"{client.zcard('stripe:q:unacked_index')}, mutex "
        f"{client.exists('stripe:q:unacked_mutex')}"
    ]
    for i in range(signups):
        key = f"signup-u_{i:05d}"
        if key in have:
            continue
        notes.append(
            f"{key}: marked {client.exists(f'stripe:seen:signup:msg_fault_{i:05d}')}, "
            f"customer remembered {client.exists(f'stripe:customer:test:{key}')}, "
            f"published {client.exists(f'stripe:published:customers:create:{key}')}"
        )
    return notes


def run_fault(
    signups: int = 1000,
    kill_every: int = 100,
    fail_rate: float = 0.3,
    outage_s: float = 4.0,
    seed: int = 7,
    say=print,
) -> Report:
    """Run the scenario; returns the counts (check `report.ok`)."""
    rng = random.Random(seed)
    report = Report(signups)
    started = time.monotonic()
    logdir = Path(tempfile.mkdtemp(prefix="fault-run-"))
    emulator = EmulatorServer("127.0.0.1", 0).start()
    emulator.state.set_faults({"rate": fail_rate, "status": [500, 429]})
    if shutil.which("redis-server"):
        redis_port = free_port()
        redis_proc: subprocess.Popen | None = start_redis(redis_port)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
    else:  # the outage needs a process to pause; without one the run says so
        from worker.devtools.local import embedded_redis

        redis_port = free_port()
        server = embedded_redis(redis_port)
        redis_proc, redis_url = None, f"redis://127.0.0.1:{redis_port}/0"
        report.notes.append("no redis-server installed: ran on fakeredis, without the outage")
    web_port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE", "REDIS", "STREAM", "RETRY", "SIGNUP"))
    }
    env.update(
        REDIS_URL=redis_url,
        STRIPE_API_BASE=emulator.url,
        STRIPE_SECRET_KEY=KEY,
        SIGNUP_WEBHOOK_SECRET=SECRET,
        STRIPE_WEBHOOK_SECRET="whsec_unused_here",
        PYTHONPATH=str(ROOT),
        RETRY_BASE_DELAY="0.2",
        RETRY_MAX_DELAY="2",
        RETRY_MAX_ATTEMPTS="14",
        TASK_TIME_LIMIT="8",
        VISIBILITY_TIMEOUT="12",
        STRIPE_TIMEOUT="5",
        WORKER_CONCURRENCY="8",
    )
    procs = Processes(env, logdir)
    web = procs.start("web", "--host", "127.0.0.1", "--port", str(web_port), "--workers", "2")
    receiver = f"http://127.0.0.1:{web_port}"
    wait_http(receiver + "/healthz")
    worker = procs.start("worker")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    lock = threading.Lock()
    stop_chaos = threading.Event()

    def deliver(body: bytes, msg_id: str) -> None:
        """One delivery, retried on 503 or no answer like Stripe and Svix do (bounded)."""
        for attempt in range(60):
            stamp = int(time.time())
            sig = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), body.decode())
            headers = {
                "webhook-id": msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": sig,
                "Content-Type": "application/json",
            }
            try:
                r = requests.post(
                    receiver + "/webhooks/signup", data=body, headers=headers, timeout=5
                )
                with lock:
                    report.deliveries += 1
                    report.answered_503 += r.status_code == 503
                if r.status_code == 200:
                    return
                if r.status_code != 503:
                    raise RuntimeError(f"{r.status_code} {r.text}")
            except requests.RequestException:
                pass
            time.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)) * (0.5 + rng.random() / 2))
        with lock:
            report.unanswered += 1

    def signup(i: int) -> None:
        body = json.dumps(
            {
                "type": "user.created",
                "data": {
                    "user_id": f"u_{i:05d}",
                    "email": f"user{i}@example.com",
                    "name": f"User {i}",
                },
            }
        ).encode()
        msg_id = f"msg_fault_{i:05d}"
        twins = [threading.Thread(target=deliver, args=(body, msg_id)) for _ in range(2)]
        for t in twins:
            t.start()
        for t in twins:
            t.join()
        deliver(body, msg_id)

    def chaos() -> None:
        nonlocal worker, web
        next_kill = kill_every
        restarted_web = outage_done = False
        while not stop_chaos.is_set():
            done_tasks = emulator.state.stats["requests"]
            if done_tasks >= next_kill:
                Processes.stop(worker, signal.SIGKILL)
                report.worker_kills += 1
                worker = procs.start("worker")
                next_kill += kill_every
            delivered = report.deliveries
            if not restarted_web and delivered > signups:
                Processes.stop(web)
                web = procs.start(
                    "web", "--host", "127.0.0.1", "--port", str(web_port), "--workers", "2"
                )
                wait_http(receiver + "/healthz")
                report.receiver_restarts += 1
                restarted_web = True
            if not outage_done and redis_proc is not None and delivered > signups * 1.5:
                redis_proc.send_signal(signal.SIGSTOP)
                paused = time.monotonic()
                time.sleep(outage_s)
                redis_proc.send_signal(signal.SIGCONT)
                report.redis_outage_s = round(time.monotonic() - paused, 1)
                outage_done = True
            time.sleep(0.05)

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(signup, range(signups)))
        say(
            f"delivered {signups} signups x3 in {time.monotonic() - started:.1f}s; "
            "waiting for the worker"
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                settled = client.xlen("stripe:customers") + client.xlen("stripe:errors") >= signups
            except redis.RedisError:
                settled = False
            if settled:
                break
            time.sleep(0.2)
        stop_chaos.set()
        chaos_thread.join(30)
        time.sleep(2)  # a task killed after publishing would show here as a second entry
        entries = [f for _i, f in client.xrange("stripe:customers")]
        keys = Counter(f["idempotency_key"] for f in entries)
        report.entries = len(entries)
        report.distinct_customers_in_entries = len({f["customerId"] for f in entries})
        report.duplicates = sum(n - 1 for n in keys.values())
        report.errors = client.xlen("stripe:errors")
        report.customers_created = emulator.state.stats["created"]["test"]
        report.emulator_faults = emulator.state.stats["faults"]
        if not report.ok:
            report.notes += diagnose(client, entries, signups)
    finally:
        stop_chaos.set()
        for proc in (worker, web):
            Processes.stop(proc)
        if redis_proc is not None:
            redis_proc.send_signal(signal.SIGCONT)
            redis_proc.kill()
            redis_proc.wait(10)
        else:
            server.shutdown()
        emulator.stop()
    report.seconds = round(time.monotonic() - started, 1)
    if not report.ok:
        report.notes.append(f"logs in {logdir}")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signups", type=int, default=1000)
    parser.add_argument("--kill-every", type=int, default=100)
    parser.add_argument("--fail-rate", type=float, default=0.3)
    parser.add_argument("--outage", type=float, default=4.0, help="seconds Redis is paused")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    report = run_fault(args.signups, args.kill_every, args.fail_rate, args.outage)
    for name, value in asdict(report).items():
        print(f"{name:32} {value}")
    print("OK: every signup is exactly one customer and one entry" if report.ok else "FAILED")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
