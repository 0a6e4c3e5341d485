"""Recovery: each worker queues again the recorded work whose message was lost.

kombu's Redis transport pops a message (BRPOP) before it records it as unacked, so a
worker killed in between loses it; every accepted delivery is in the ledger until its
task ends (worker/queue.py), and `requeue_lost` queues again the ledger's work whose
message is in neither the queue nor the unacked set after VISIBILITY_TIMEOUT. The
thread runs in the worker's main process; several workers doing it at once can only
queue a piece of work twice, which the idempotency key and publish-once mark make harmless.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from worker.connections import redis_client
from worker.envelope import message_id_of, new_message_id, task_message
from worker.queue import ledger_record
from worker.settings import Settings
from worker.work import Work

log = logging.getLogger("stripe_worker.recovery")
MAX_REAP_SCAN = 20_000  # queue length above which the reaper waits for the backlog to drain


def requeue_lost(
    client: redis.Redis, settings: Settings, older_than: float | None = None
) -> list[str]:
    """Queue again recorded work whose message is gone; returns the delivery ids."""
    older_than = settings.visibility_timeout if older_than is None else older_than
    keys = settings.keys
    stalled = client.zrangebyscore(keys.ledger, "-inf", time.time() - older_than, start=0, num=1000)
    if not stalled or client.llen(keys.queue) > MAX_REAP_SCAN:
        # A backlog: old work is most likely waiting its turn, and listing the queue
        # would be costly. Lost messages are found once it drains.
        return []
    alive = _message_ids_held(client, settings)
    requeued = []
    for raw_id in stalled:
        delivery_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        raw = client.hget(keys.ledger_work, delivery_id)
        now = time.time()
        if raw is None:  # published meanwhile
            client.zrem(keys.ledger, delivery_id)
            continue
        record = json.loads(raw)
        if record["message_id"] in alive:  # still queued, retrying or running: only slow
            client.zadd(keys.ledger, {delivery_id: now}, xx=True)
            continue
        work = Work.from_json(record["work"])
        message_id = new_message_id()
        pipe = client.pipeline(transaction=True)
        pipe.lpush(keys.queue, task_message(work, message_id, f"requeued {delivery_id}"))
        pipe.hset(keys.ledger_work, delivery_id, ledger_record(work, message_id))
        pipe.zadd(keys.ledger, {delivery_id: now}, xx=True)
        pipe.execute()
        log.warning("requeued %s: its message was lost (%s)", delivery_id, work.task)
        requeued.append(delivery_id)
    return requeued


def _message_ids_held(client: redis.Redis, settings: Settings) -> set[str]:
    """Message ids of every message in the queue or held unacked by a worker."""
    raws = client.lrange(settings.keys.queue, 0, -1) + client.hvals(settings.keys.unacked)
    return {m for m in map(message_id_of, raws) if m}


def recover_forever(settings: Settings, stop: threading.Event) -> None:
    client = redis_client(settings)
    interval = max(1.0, settings.visibility_timeout / 4)
    while not stop.wait(interval):
        try:
            requeue_lost(client, settings)
        except redis.RedisError as exc:  # Redis away: try again next round
            log.warning("recovery: %s", exc.__class__.__name__)


def install_recovery(app: Celery, settings: Settings) -> None:
    """Start recovery when a worker of `app` is ready; stop it when it shuts down."""
    stop = threading.Event()

    def on_ready(sender: object = None, **_: object) -> None:
        if getattr(sender, "app", None) is app:
            threading.Thread(
                target=recover_forever, args=(settings, stop), name="recovery", daemon=True
            ).start()

    def on_shutdown(sender: object = None, **_: object) -> None:
        stop.set()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
