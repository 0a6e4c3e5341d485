"""The failover run: the Redis master SIGKILLed under load, with nothing answered 200 lost.

    python bench/failover_run.py                                  # 4 runs of 30 s (3 minutes)
    python bench/failover_run.py --min-replicas 1 --replica-lag 0  # one of them

A master, a replica and three sentinels on 127.0.0.1 (tests/support/sentinel.py); the
receiver (`stripe-worker web`) and two workers (`stripe-worker worker`) at default settings
but for REDIS_URL (the sentinels), REDIS_SENTINEL_MASTER and REDIS_MIN_REPLICAS. A sender
posts distinct signups at a steady rate and retries each until it is answered 2xx, as Stripe
does. A third of the way in, the master is SIGKILLed; the sentinels promote the replica; a
few seconds later the old master comes back as a replica of the new one. Printed: the
outage senders saw (non-2xx answers, and the seconds from the kill to the last of them),
the slowest /healthz from the kill on, how long after the kill the receiver and the workers
were back, signups answered 200,
customers, entries, duplicates and lost (answered 200, no entry at the end). Exits 1 when
REDIS_MIN_REPLICAS >= 1 and anything was lost or duplicated.

Run four times by default: REDIS_MIN_REPLICAS=0 and 1, with the replica in sync at the
kill, then with its link cut for the last second before it (a slow or broken link: what
the master took in that second exists nowhere else).

`--stripe` sends Stripe events instead, each made in the emulator (a customer created,
its customer.created event) just before it is delivered, and counts them on stripe:events:
what the failover lost is then in Stripe's event list, and catch-up (tasks/catchup.py, on
by default) recovers it. `--stripe --catchup both` runs REDIS_MIN_REPLICAS=0 with the
replica cut off twice, CATCHUP=off then on: the row before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

import stripe  # noqa: E402

from bench.fault_run import KEY, SECRET  # noqa: E402
from tasks.catchup import GRACE  # noqa: E402
from tests.support import WebProcess, WorkerProcess, clean_env, wait_http  # noqa: E402
from tests.support.sentinel import MASTER_NAME, SentinelCluster  # noqa: E402
from worker.devtools.emulator import EmulatorServer  # noqa: E402
from worker.keys import Keys  # noqa: E402

KEYS = Keys("stripe")
STRIPE_SECRET = "whsec_failover_run_stripe_endpoint_0001"
VISIBILITY_TIMEOUT = 300  # the default: the ledger sweep's age


@dataclass
class FailoverReport:
    min_replicas: int
    signups: int
    answered_200: int = 0
    non_2xx_answers: int = 0
    outage_s: float = 0.0  # kill -> the last non-2xx a sender saw
    slowest_answer_s: float = 0.0  # the longest a sender waited for any answer
    # The slowest GET /healthz (no Redis call) from the kill on, asked every 0.1 s: how long
    # the receiver's process stopped for everyone (0.64 s, against 0.01 s, when redis-py's
    # retry backoff blocked the gevent worker: worker/__main__.py).
    slowest_healthz_s: float = 0.0
    receiver_back_s: float = 0.0  # kill -> the first 200 for work queued after the kill
    workers_back_s: float = 0.0  # kill -> the first entry published after the failover
    promoted_s: float = 0.0  # kill -> the sentinels name the new master
    customers: int = 0
    entries: int = 0
    duplicates: int = 0
    lost: int = 0
    recovered: int = 0  # events catch-up found in Stripe's list and queued
    given_back_left: int = 0  # messages still in q:given_back at the end: taken by no worker
    unanswered: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.duplicates, self.unanswered, self.lost, self.given_back_left) == (0, 0, 0, 0)


def run_failover(
    min_replicas: int = 1,
    rate: float = 20.0,
    seconds: float = 30.0,
    restart_after: float = 5.0,
    replica_lag: float = 0.0,
    say=print,
    stripe_events: bool = False,
    **settings: str,
) -> FailoverReport:
    """Send `rate` signups (or Stripe events) a second for `seconds`, kill the master a
    third of the way in (the replica cut off for `replica_lag` seconds before), bring it
    back as a replica `restart_after` seconds after the promotion."""
    count = int(rate * seconds)
    report = FailoverReport(min_replicas, count)
    started = time.monotonic()
    logdir = Path(tempfile.mkdtemp(prefix="failover-run-"))
    cluster = SentinelCluster().start()
    emulator = EmulatorServer("127.0.0.1", 0).start()
    env = clean_env(
        REDIS_URL=cluster.url,
        REDIS_SENTINEL_MASTER=MASTER_NAME,
        REDIS_MIN_REPLICAS=str(min_replicas),
        STRIPE_API_BASE=emulator.url,
        STRIPE_SECRET_KEY=KEY,
        SIGNUP_WEBHOOK_SECRET=SECRET,
        STRIPE_WEBHOOK_SECRET=STRIPE_SECRET,
        PYTHONPATH=str(ROOT),
        **settings,
    )
    web = WebProcess(env, logdir / "web.log")
    workers = [WorkerProcess(env, logdir / f"worker{n}.log").start() for n in range(2)]
    receiver = web.url
    lock = threading.Lock()
    answered: set[int] = set()
    failures: list[float] = []  # when a sender saw a non-2xx answer or none
    firsts: list[float] = []  # when a signup first sent after the kill was answered 200
    kill_at = [float("inf")]
    deadline = time.monotonic() + seconds + 120
    event_ids: dict[int, str] = {}
    last_made = [0.0]

    def made_event(i: int) -> dict:
        """A customer made in the emulator now, and the customer.created event it made."""
        customer = emulator.state.create_customer("test", {"email": f"u{i}@x.test"})
        with emulator.state.lock:
            log = emulator.state.events.logs[("test", "")]
            event = next(e.event for e in reversed(log) if e.event["data"]["object"] is not None
                         and e.event["data"]["object"]["id"] == customer["id"])  # fmt: skip
        with lock:
            event_ids[i] = event["id"]
            last_made[0] = max(last_made[0], time.time())
        return event

    def request(i: int, body: str) -> tuple[str, dict[str, str]]:
        if stripe_events:
            header = stripe.WebhookSignature.generate_signature_header(body, STRIPE_SECRET)
            return "/webhooks/stripe", {
                "Stripe-Signature": header,
                "Content-Type": "application/json",
            }
        msg_id = f"msg_failover_{i:05d}"
        stamp = int(time.time())
        sig = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), body)
        return "/webhooks/signup", {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sig,
            "Content-Type": "application/json",
        }

    def deliver(i: int) -> None:
        body = json.dumps(
            made_event(i)
            if stripe_events
            else {
                "type": "user.created",
                "data": {"user_id": f"u_{i:05d}", "email": f"u{i}@x.test"},
            }
        )
        sent_at = time.time()
        for attempt in range(1000):
            route, headers = request(i, body)
            asked = time.time()
            try:
                r = requests.post(receiver + route, data=body, headers=headers, timeout=10)
                ok = r.status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                report.slowest_answer_s = max(
                    report.slowest_answer_s, round(time.time() - asked, 2)
                )
                if ok:
                    answered.add(i)
                    if sent_at > kill_at[0]:
                        firsts.append(time.time())
                    return
                failures.append(time.time())
            if time.monotonic() > deadline:
                break
            # Stripe backs off over hours; compressed here to seconds, with jitter.
            time.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)) * (0.5 + (i % 7) / 14))
        with lock:
            report.unanswered += 1

    def chaos() -> None:
        time.sleep(max(0.0, seconds / 3 - replica_lag))
        old = cluster.current_master()
        replica = cluster.procs[cluster.replica_port if old == cluster.master_port else old]
        if replica_lag:  # the replica's link breaks: what the master takes meanwhile is its own
            replica.send_signal(signal.SIGSTOP)  # so that it cannot reconnect
            cluster.master().client_kill_filter(_type="replica")
            time.sleep(replica_lag)
        kill_at[0] = time.time()
        cluster.kill(old)
        replica.send_signal(signal.SIGCONT)
        say(f"killed the master (port {old}) at t={time.monotonic() - started:.1f}s")
        new = cluster.wait_promoted(old)
        report.promoted_s = round(time.time() - kill_at[0], 2)
        say(f"sentinels promoted port {new} after {report.promoted_s}s")
        time.sleep(restart_after)
        cluster.start_redis(old, replica_of=new)
        cluster.wait(lambda: cluster.replicas_in_sync() >= 1, 60, "the old master did not resync")
        say(f"old master back as a replica, in sync {time.time() - kill_at[0]:.1f}s after the kill")

    sending = threading.Event()

    def probe_healthz() -> None:
        while not sending.wait(0.1):
            asked = time.time()
            with contextlib.suppress(requests.RequestException):
                requests.get(receiver + "/healthz", timeout=30)
            if asked >= kill_at[0]:
                took = time.time() - asked
                report.slowest_healthz_s = max(report.slowest_healthz_s, round(took, 3))

    try:
        wait_http(receiver + "/readyz", timeout=60)
        chaos_thread = threading.Thread(target=chaos, daemon=True)
        threading.Thread(target=probe_healthz, daemon=True).start()
        with ThreadPoolExecutor(max_workers=64) as pool:
            begin = time.monotonic()
            chaos_thread.start()
            for i in range(count):
                time.sleep(max(0.0, begin + i / rate - time.monotonic()))
                pool.submit(deliver, i)
        chaos_thread.join(120)
        sending.set()
        sent = "Stripe events" if stripe_events else "signups"
        say(f"sent {count} {sent} in {time.monotonic() - begin:.1f}s; waiting for the workers")
        client = cluster.master(decode_responses=True)
        stream = KEYS.stream("events" if stripe_events else "customers")
        progress = {"seen": (-1, -1, -1), "since": time.monotonic()}
        catching_up = stripe_events and settings.get("CATCHUP", "on") != "off"

        def settled() -> bool:
            # What was given back (a crash's recovery, a failover's) is taken by a live
            # worker before the run stops them: their SIGTERM would hand back what it holds.
            now = (client.xlen(stream), client.zcard(KEYS.ledger), client.llen(KEYS.given_back))
            if now != progress["seen"]:
                progress.update(seen=now, since=time.monotonic())
            # Done, or nothing moved for 20 s (what was lost stays lost); with catch-up, once
            # it has listed past the last event made (within CATCHUP_INTERVAL + GRACE).
            ran = float(client.hget(KEYS.catchup, "ran_at") or 0)
            if catching_up and ran < last_made[0] + GRACE + 1:
                progress["since"] = time.monotonic()
                return False
            done = now[0] >= len(answered) and now[1] == 0 and now[2] == 0
            if catching_up and not done:  # what is left in the ledger, its sweep requeues
                return time.time() > kill_at[0] + VISIBILITY_TIMEOUT + 150
            return done or time.monotonic() - progress["since"] > 20

        SentinelCluster.wait(settled, 600, "the workers did not finish")
    except RuntimeError as exc:
        report.notes.append(str(exc))
    finally:
        for proc in (*workers, web):
            proc.terminate()
        for proc in (*workers, web):
            proc.stop()
    try:
        client = cluster.master(decode_responses=True)
        entries = client.xrange(stream)
        keys = Counter(
            fields["source_id" if stripe_events else "idempotency_key"] for _id, fields in entries
        )
        report.answered_200 = len(answered)
        report.non_2xx_answers = len(failures)
        after = [t for t in failures if t >= kill_at[0]]
        report.outage_s = round(max(after) - kill_at[0], 2) if after else 0.0
        report.receiver_back_s = round(min(firsts) - kill_at[0], 2) if firsts else 0.0
        fresh = [int(i.split("-")[0]) / 1000 for i, _f in entries]
        fresh = [t for t in fresh if t > kill_at[0] + report.promoted_s]
        report.workers_back_s = round(min(fresh) - kill_at[0], 2) if fresh else 0.0
        report.customers = emulator.state.stats["created"]["test"]
        report.entries = len(entries)
        emails = Counter(c["email"] for c in emulator.state.customers["test"].values())
        # A second entry for a signup, or a second customer for one user.
        report.duplicates = sum(n - 1 for n in keys.values()) + sum(n - 1 for n in emails.values())
        named = (lambda i: event_ids[i]) if stripe_events else (lambda i: f"signup-u_{i:05d}")
        lost = [i for i in answered if named(i) not in keys]
        report.lost = len(lost)
        report.recovered = int(client.hget(KEYS.catchup, "recovered") or 0)
        report.given_back_left = client.llen(KEYS.given_back)
        delivery = (lambda i: f"stripe:{event_ids[i]}") if stripe_events else None
        report.notes += [where(client, i, delivery) for i in lost[:5]]
        if client.xlen(KEYS.stream("errors")):
            report.notes.append(f"{client.xlen(KEYS.stream('errors'))} entries on the error stream")
    finally:
        cluster.stop()
        emulator.stop()
    report.seconds = round(time.monotonic() - started, 1)
    if report.ok:  # the logs are kept only to read a failure
        shutil.rmtree(logdir, ignore_errors=True)
    else:
        report.notes.append(f"logs in {logdir}")
    return report


def where(client, i: int, delivery_of=None) -> str:  # type: ignore[no-untyped-def]
    """Where the work of signup (or event) `i` stopped."""
    delivery = delivery_of(i) if delivery_of else f"signup:msg_failover_{i:05d}"
    record = client.hget(KEYS.ledger_work, delivery)
    message_id = json.loads(record)["message_id"] if record else None
    places = {
        "queue": client.lrange(KEYS.queue, 0, -1),
        "given back": client.lrange(KEYS.given_back, 0, -1),
        "unacked": client.hvals(KEYS.unacked),
    }
    for worker in client.zrange(KEYS.workers, 0, -1):
        places[f"fetched by {worker}"] = client.lrange(KEYS.fetched(worker), 0, -1)
    held = [
        name
        for name, raws in places.items()
        for r in raws
        if message_id and message_id in (r or "")
    ]
    return (
        f"{delivery}: marked {client.exists(KEYS.seen(delivery))}, in the ledger "
        f"{record is not None}, its message held {len(held)} time(s) {held}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-replicas", type=int, choices=(0, 1), help="default: 0, then 1")
    parser.add_argument("--rate", type=float, default=20.0, help="signups a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--restart-after", type=float, default=5.0)
    parser.add_argument(
        "--replica-lag",
        type=float,
        help="seconds the replica's link is down before the kill (default: 0, then 1)",
    )
    parser.add_argument(
        "--stripe", action="store_true", help="Stripe events made in the emulator, not signups"
    )
    parser.add_argument(
        "--catchup",
        choices=("on", "off", "both"),
        default="on",
        help="with --stripe: CATCHUP; both: REDIS_MIN_REPLICAS=0, replica cut off, off then on",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    failed = False
    lags = (0.0, 1.0) if args.replica_lag is None else (args.replica_lag,)
    settings = (0, 1) if args.min_replicas is None else (args.min_replicas,)
    runs = [(lag, n, "on") for lag in lags for n in settings]
    if args.stripe and args.catchup == "both":
        runs = [(args.replica_lag or 1.0, args.min_replicas or 0, c) for c in ("off", "on")]
    elif args.stripe:
        runs = [(lag, n, args.catchup) for lag, n, _ in runs]
    for lag, n, catchup in runs:
        what = f", Stripe events, CATCHUP={catchup}" if args.stripe else ""
        print(f"--- REDIS_MIN_REPLICAS={n}, replica lagging {lag:g} s at the kill{what}")
        report = run_failover(
            n, args.rate, args.seconds, args.restart_after, lag, stripe_events=args.stripe,
            **({"CATCHUP": catchup} if args.stripe else {}),
        )  # fmt: skip
        for name, value in asdict(report).items():
            print(f"{name:20} {value}")
        # With catch-up on, Stripe's list makes up for REDIS_MIN_REPLICAS=0 too.
        failed |= (n >= 1 or (args.stripe and catchup == "on")) and not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
