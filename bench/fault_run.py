"""The fault run: nothing lost, nothing twice, under crashes, outages and retry storms.

    python bench/fault_run.py                 # 1,000 signups (a few minutes)
    python bench/fault_run.py --signups 100   # the size the test suite runs

N distinct signups, each delivered 3 times (two of them at once) through a real
gunicorn receiver, while the Stripe emulator fails 30% of calls with 500 or 429. Every
process runs with the default settings. Phase 1: the worker is killed with SIGKILL every
~100 Stripe calls and restarted, the receiver is restarted once, and Redis stops
answering for a few seconds (SIGSTOP: connections hang as in a network partition; the
receiver answers 503 and the sender retries, as Stripe does). Phase 2, the crash loop:
the worker is SIGKILLed every 2-4 s for CRASH_LOOP seconds while the rest of the signups
and their retries flow. After each kill the run notes what the dead worker held; it reports
the longest any of it waited, from the kill, to be held by a live worker again (or
published). Five poison messages (not JSON, not Celery's list, an unknown task, bad
arguments) wait at the head of the queue: the worker must quarantine them and go on.
At the end it counts, from the emulator and from Redis: customers created,
stream entries, errors and duplicates, and exits 1 unless every signup became exactly
one customer and one entry.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

from tests.support import (  # noqa: E402
    Process,
    RedisServer,
    WebProcess,
    clean_env,
    cli,
    sign_standard,
)
from worker.devtools.emulator import EmulatorServer  # noqa: E402
from worker.devtools.local import free_port  # noqa: E402
from worker.keys import Keys  # noqa: E402

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
    crash_loop_kills: int = 0
    longest_wait_after_death_s: float = 0.0
    longest_give_back_after_death_s: float = 0.0
    last_kill_to_last_entry_s: float = 0.0
    poison_pushed: int = 0  # messages no task can run, queued ahead of the signups
    quarantined: int = 0  # of those, set aside on the error stream
    worker_alive_at_end: bool = False
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
            self.quarantined,
            self.worker_alive_at_end,
        ) == (n, n, n, 0, 0, 0, self.poison_pushed, True)


def poison_messages() -> list[bytes]:
    """One message of each kind no task can run, in the receiver's envelope otherwise."""

    from worker.envelope import new_message_id, task_message
    from worker.spec import ComponentSpec
    from worker.work import Work

    spec = ComponentSpec.parse(
        {"component": "stripe.createCustomer", "trigger": "true", "Body": {"email": "p@x.io"}}
    )
    work = Work.for_component(spec, "signup", "msg_poison")
    kwargs = {"work": work.to_json()}
    bodies = [
        (b"not json {", work.task),
        (b'{"not": "a list"}', work.task),
        (json.dumps([[], kwargs]).encode(), work.task),
        (json.dumps([[], kwargs, {}]).encode(), "os.system"),
        (json.dumps([[], {"work": {}}, {}]).encode(), work.task),
    ]
    messages = []
    for body, task in bodies:
        envelope = json.loads(task_message(work, new_message_id()))
        envelope["body"] = base64.b64encode(body).decode()
        envelope["headers"]["task"] = task
        messages.append(json.dumps(envelope).encode())
    return messages


def diagnose(client: redis.Redis, keys: Keys, entries: list[dict], signups: int) -> list[str]:
    """Where the work of each signup without an entry stopped."""
    have = {f["idempotency_key"] for f in entries}
    notes = [
        f"queue {client.llen(keys.queue)}, given back {client.llen(keys.given_back)}, "
        f"unacked {client.hlen(keys.unacked)}, unacked_index "
        f"{client.zcard(keys.unacked_index)}, mutex "
        f"{client.exists(keys.kombu_prefix + 'unacked_mutex')}, ledger {client.zcard(keys.ledger)}"
    ]
    for i in range(signups):
        key = f"signup-u_{i:05d}"
        if key in have:
            continue
        notes.append(
            f"{key}: marked {client.exists(keys.seen(f'signup:msg_fault_{i:05d}'))}, "
            f"customer remembered {client.exists(keys.customer(False, key))}, "
            f"published {client.exists(keys.published('customers', f'create:{key}'))}"
        )
    return notes


class Orphans:
    """What each killed worker held, and when every piece got back into live hands.

    Followed by message id (Celery's task id), which a retry keeps while its delivery
    tag changes: back when a live worker holds a message of that id under a lease newer
    than the kill, or when its delivery ended (published)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.waiting: dict[str, tuple[str, float]] = {}  # message id -> (delivery id, killed at)
        self.longest = 0.0
        self.slowest: tuple = ()
        self.given_back: dict[str, float] = {}
        self.longest_give_back = 0.0
        self.lock = threading.Lock()

    @staticmethod
    def _ids(payload: dict) -> tuple[str, str] | None:
        """(message id, delivery id); None for a poison message (it is quarantined)."""
        try:
            _args, kwargs, _embed = json.loads(base64.b64decode(payload["body"]))
            return payload["headers"]["id"], kwargs["work"]["delivery_id"]
        except (ValueError, KeyError, TypeError):
            return None

    def _held_now(self) -> dict[str, float]:
        """message id -> the newest lease of a message of that id held now."""
        leases: dict[str, float] = {}
        for tag, raw in self.client.hgetall(self.keys.unacked).items():
            score = self.client.zscore(self.keys.unacked_index, tag) or 0.0
            ids = self._ids(json.loads(raw)[0])
            if ids is not None:
                leases[ids[0]] = max(leases.get(ids[0], 0.0), score)
        return leases

    def held(self) -> list[tuple[str, str]]:
        """(message id, delivery id) of every message a worker holds or has fetched."""
        payloads = [json.loads(raw)[0] for raw in self.client.hvals(self.keys.unacked)]
        for worker_id in self.client.zrange(self.keys.workers, 0, -1):
            payloads += [
                json.loads(raw) for raw in self.client.lrange(self.keys.fetched(worker_id), 0, -1)
            ]
        return [ids for ids in map(self._ids, payloads) if ids is not None]

    def killed(self, held: list[tuple[str, str]], at: float) -> None:
        with self.lock:
            for message_id, delivery_id in held:
                self.waiting.setdefault(message_id, (delivery_id, at))

    def poll(self) -> None:
        now = time.time()
        leases = self._held_now()
        with self.lock:
            for message_id, (delivery_id, at) in list(self.waiting.items()):
                held_again = leases.get(message_id, 0.0) > at
                done = self.client.zscore(self.keys.ledger, delivery_id) is None
                if message_id not in leases and message_id not in self.given_back:
                    # Out of the dead worker's hands: back on the queue (or done).
                    self.given_back[message_id] = now
                    self.longest_give_back = max(self.longest_give_back, now - at)
                if held_again or done:
                    if now - at > self.longest:
                        self.longest = now - at
                        self.slowest = (
                            round(now - at, 1),
                            delivery_id,
                            "held again" if held_again else "ended",
                        )
                    del self.waiting[message_id]


class FaultRun:
    """The scenario's parts: the processes it starts and kills, the senders, the two
    phases of chaos, and the count at the end. `run_fault` runs it once."""

    def __init__(
        self,
        signups: int,
        kill_every: int,
        fail_rate: float,
        outage_s: float,
        crash_loop_s: float,
        seed: int,
        say: Callable[[str], object],
        settings: dict[str, str],
    ) -> None:
        self.signups, self.kill_every = signups, kill_every
        self.outage_s, self.crash_loop_s, self.say = outage_s, crash_loop_s, say
        self.rng = random.Random(seed)
        self.report = Report(signups)
        self.started = time.monotonic()
        self.logdir = Path(tempfile.mkdtemp(prefix="fault-run-"))
        self.emulator = EmulatorServer("127.0.0.1", 0).start()
        self.emulator.state.set_faults({"rate": fail_rate, "status": [500, 429]})
        # The outage needs a process to pause; on fakeredis the run goes without it, and
        # says so.
        self.own_redis = RedisServer().start()
        if not self.own_redis.pausable:
            self.report.notes.append(
                "no redis-server installed: ran on fakeredis, without the outage"
            )
        self.keys = Keys("stripe")  # the default STREAM_PREFIX: the processes run at defaults
        self.env = clean_env(
            REDIS_URL=self.own_redis.url,
            STRIPE_API_BASE=self.emulator.url,
            STRIPE_SECRET_KEY=KEY,
            SIGNUP_WEBHOOK_SECRET=SECRET,
            STRIPE_WEBHOOK_SECRET="whsec_unused_here",
            PYTHONPATH=str(ROOT),
            **settings,
        )
        self.started_processes = 0
        self.web_port = free_port()
        self.web = self.start_web()
        self.receiver = self.web.url
        self.client = redis.Redis.from_url(self.own_redis.url, decode_responses=True)
        self.orphans = Orphans(
            redis.Redis.from_url(self.own_redis.url, decode_responses=True), self.keys
        )
        self.worker: Process | None = None
        self.lock = threading.Lock()
        self.stop_chaos = threading.Event()
        self.settled = threading.Event()
        self.last_kill = 0.0
        self.first_half = signups // 2

    # Processes.

    def start_worker(self) -> Process:
        self.started_processes += 1
        log = self.logdir / f"worker-{self.started_processes}.log"
        return Process(cli("worker"), self.env, log).start()

    def start_web(self) -> WebProcess:
        self.started_processes += 1
        log = self.logdir / f"web-{self.started_processes}.log"
        return WebProcess(self.env, log, workers=2, port=self.web_port)

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.kill()
        self.last_kill = time.time()
        # Looked at once it is dead: what it held then, and not what it had handed on just
        # before (a retry it queued and then acked waits its turn on the queue, held by nobody).
        try:
            held = self.orphans.held()
        except redis.RedisError:
            held = []
        self.orphans.killed(held, self.last_kill)
        self.worker = self.start_worker()
        self.report.worker_kills += 1

    # Senders.

    def deliver(self, body: bytes, msg_id: str) -> None:
        """One delivery, retried on 503 or no answer like Stripe and Svix do (bounded)."""
        for attempt in range(60):
            headers = {
                **sign_standard(body, msg_id, secret=SECRET),
                "Content-Type": "application/json",
            }
            try:
                r = requests.post(
                    self.receiver + "/webhooks/signup", data=body, headers=headers, timeout=5
                )
                with self.lock:
                    self.report.deliveries += 1
                    self.report.answered_503 += r.status_code == 503
                if r.status_code == 200:
                    return
                if r.status_code != 503:
                    raise RuntimeError(f"{r.status_code} {r.text}")
            except requests.RequestException:
                pass
            time.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)) * (0.5 + self.rng.random() / 2))
        with self.lock:
            self.report.unanswered += 1

    def signup(self, i: int) -> None:
        """Signup `i`, delivered three times: twice at once, then once more."""
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
        twins = [threading.Thread(target=self.deliver, args=(body, msg_id)) for _ in range(2)]
        for t in twins:
            t.start()
        for t in twins:
            t.join()
        self.deliver(body, msg_id)

    # Chaos.

    def chaos(self) -> None:
        """Phase 1: kills by Stripe calls, one receiver restart, one Redis outage."""
        next_kill = self.kill_every
        restarted_web = outage_done = False
        while not self.stop_chaos.is_set():
            if self.emulator.state.stats["requests"] >= next_kill:
                self.kill_worker()
                next_kill += self.kill_every
            delivered = self.report.deliveries
            if not restarted_web and delivered > self.first_half:
                self.web.stop(30)
                self.web = self.start_web()
                self.report.receiver_restarts += 1
                restarted_web = True
            if not outage_done and self.own_redis.pausable and delivered > self.first_half * 1.5:
                self.own_redis.pause()
                paused = time.monotonic()
                time.sleep(self.outage_s)
                self.own_redis.resume()
                self.report.redis_outage_s = round(time.monotonic() - paused, 1)
                outage_done = True
            time.sleep(0.05)

    def crash_loop(self, until: float) -> None:
        """Phase 2: SIGKILL every 2-4 s while signups and retries flow."""
        while time.monotonic() < until and not self.stop_chaos.is_set():
            time.sleep(self.rng.uniform(2, 4))
            self.kill_worker()
            self.report.crash_loop_kills += 1

    def watch_orphans(self) -> None:
        while not self.settled.is_set() or self.orphans.waiting:
            with contextlib.suppress(redis.RedisError):
                self.orphans.poll()
            time.sleep(0.1)

    # The run.

    def run(self) -> Report:
        poison = poison_messages()  # ahead of every signup: the worker must get past them
        self.client.lpush(self.keys.queue, *poison)
        self.report.poison_pushed = len(poison)
        self.worker = self.start_worker()
        watcher = threading.Thread(target=self.watch_orphans, daemon=True)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=12) as pool:
                self.phase_one(pool)
                self.phase_two(pool)
            self.say(
                f"delivered {self.signups} signups x3 in {self.elapsed():.1f}s; "
                "waiting for the worker"
            )
            self.wait_until_settled()
            self.stop_chaos.set()
            self.settled.set()
            watcher.join(60)
            self.count()
        finally:
            self.stop_chaos.set()
            self.settled.set()
            for proc in (self.worker, self.web):
                if proc is not None:
                    proc.stop(30)
            self.own_redis.stop()
            self.emulator.stop()
        self.report.seconds = round(self.elapsed(), 1)
        if self.report.ok:  # the logs are kept only to read a failure
            shutil.rmtree(self.logdir, ignore_errors=True)
        else:
            self.report.notes.append(f"logs in {self.logdir}")
        return self.report

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def phase_one(self, pool: ThreadPoolExecutor) -> None:
        chaos = threading.Thread(target=self.chaos, daemon=True)
        chaos.start()
        list(pool.map(self.signup, range(self.first_half)))
        self.stop_chaos.set()
        chaos.join(60)
        self.stop_chaos.clear()
        self.say(f"phase 1 done in {self.elapsed():.1f}s; crash loop for {self.crash_loop_s:.0f}s")

    def phase_two(self, pool: ThreadPoolExecutor) -> None:
        started = time.monotonic()
        looper = threading.Thread(
            target=self.crash_loop, args=(started + self.crash_loop_s,), daemon=True
        )
        looper.start()
        # The second half arrives evenly over the loop's first 80%.
        rest = range(self.first_half, self.signups)
        pace = self.crash_loop_s * 0.8 / max(1, len(rest))
        futures = []
        for n, i in enumerate(rest):
            time.sleep(max(0.0, started + n * pace - time.monotonic()))
            futures.append(pool.submit(self.signup, i))
        for f in futures:
            f.result()
        looper.join(self.crash_loop_s + 10)

    def wait_until_settled(self, timeout: float = 300) -> None:
        """Until every signup and poison message has its entry (or the deadline)."""
        wanted = self.signups + self.report.poison_pushed
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if (
                    self.client.xlen(self.keys.stream("customers"))
                    + self.client.xlen(self.keys.stream("errors"))
                    >= wanted
                ):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.2)

    def count(self) -> None:
        """The report's counts, from the emulator and from Redis."""
        client, keys, report, orphans = self.client, self.keys, self.report, self.orphans
        # A task killed after publishing would show here as a second entry.
        for _ in range(40):
            if client.hlen(keys.unacked) == 0 and client.llen(keys.queue) == 0:
                break
            time.sleep(0.1)
        entries = [f for _i, f in client.xrange(keys.stream("customers"))]
        counted = Counter(f["idempotency_key"] for f in entries)
        report.entries = len(entries)
        report.distinct_customers_in_entries = len({f["customerId"] for f in entries})
        report.duplicates = sum(n - 1 for n in counted.values())
        failures = [f for _i, f in client.xrange(keys.stream("errors"))]
        report.quarantined = sum(f["error_type"] == "invalid_message" for f in failures)
        report.errors = len(failures) - report.quarantined
        report.worker_alive_at_end = self.worker is not None and self.worker.alive()
        report.customers_created = self.emulator.state.stats["created"]["test"]
        report.emulator_faults = self.emulator.state.stats["faults"]
        report.longest_wait_after_death_s = round(orphans.longest, 1)
        report.longest_give_back_after_death_s = round(orphans.longest_give_back, 1)
        if orphans.slowest:
            report.notes.append(f"longest wait: {orphans.slowest}")
        last = client.xrevrange(keys.stream("customers"), count=1)
        if last and self.last_kill:
            last_ms = int(last[0][0].split("-")[0])
            # 0 when every entry was in before the last kill.
            report.last_kill_to_last_entry_s = max(0.0, round(last_ms / 1000 - self.last_kill, 1))
        if orphans.waiting:
            report.notes.append(f"{len(orphans.waiting)} orphaned messages never came back")
        if not report.ok:
            report.notes += diagnose(client, keys, entries, self.signups)


def run_fault(
    signups: int = 1000,
    kill_every: int = 100,
    fail_rate: float = 0.3,
    outage_s: float = 4.0,
    crash_loop_s: float = 120.0,
    seed: int = 7,
    say: Callable[[str], object] = print,
    **settings: str,
) -> Report:
    """Run the scenario at default settings (or `settings`, as environment variables);
    returns the counts (check `report.ok`)."""
    return FaultRun(
        signups, kill_every, fail_rate, outage_s, crash_loop_s, seed, say, settings
    ).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signups", type=int, default=1000)
    parser.add_argument("--kill-every", type=int, default=100)
    parser.add_argument("--fail-rate", type=float, default=0.3)
    parser.add_argument("--outage", type=float, default=4.0, help="seconds Redis is paused")
    parser.add_argument(
        "--crash-loop", type=float, default=120.0, help="seconds of SIGKILL every 2-4 s"
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    report = run_fault(args.signups, args.kill_every, args.fail_rate, args.outage, args.crash_loop)
    for name, value in asdict(report).items():
        print(f"{name:32} {value}")
    print("OK: every signup is exactly one customer and one entry" if report.ok else "FAILED")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
