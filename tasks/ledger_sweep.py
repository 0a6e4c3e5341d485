"""The ledger sweep, crash recovery's last resort: accepted work whose message is nowhere.

Every known way of losing a message is closed (tasks/transport.py, tasks/recovery.py);
this runs every VISIBILITY_TIMEOUT / 4 from the recovery thread and queues again any
delivery still in the ledger after VISIBILITY_TIMEOUT whose message is in no queue,
fetched list or unacked hash.
"""

from __future__ import annotations

import json
import logging
import time

import redis

from worker.envelope import message_id_of, new_message_id, task_message
from worker.queue import ledger_record
from worker.settings import Settings
from worker.trail import Trail
from worker.work import Work

log = logging.getLogger("stripe_worker.recovery")
MAX_REAP_SCAN = 20_000  # queue length above which the sweep waits for the queue to drain


def requeue_lost(
    client: redis.Redis, settings: Settings, older_than: float | None = None
) -> list[str]:
    """Queue again ledger work whose message is nowhere (a last resort: every known way
    of losing one is closed); returns the delivery ids."""
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
        delivery_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
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
        traceparent = record.get("traceparent")
        pipe.lpush(
            keys.queue, task_message(work, message_id, f"requeued {delivery_id}", traceparent)
        )
        pipe.hset(keys.ledger_work, delivery_id, ledger_record(work, message_id, traceparent))
        pipe.zadd(keys.ledger, {delivery_id: now}, xx=True)
        pipe.execute()
        log.warning("requeued %s: its message was lost (%s)", delivery_id, work.task)
        Trail(client, settings).record(work, "requeued", message=message_id)
        requeued.append(delivery_id)
    return requeued


def _message_ids_held(client: redis.Redis, settings: Settings) -> set[str]:
    """Message ids of every message queued, given back, fetched or held unacked by a
    worker."""
    keys = settings.keys
    raws = (
        client.lrange(keys.queue, 0, -1)
        + client.lrange(keys.given_back, 0, -1)
        + client.hvals(keys.unacked)
    )
    for raw_id in client.zrange(keys.workers, 0, -1):
        worker_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        raws += client.lrange(keys.fetched(worker_id), 0, -1)
    return {m for m in map(message_id_of, raws) if m}
