"""Queueing work exactly once, and never losing it: dedupe, enqueue and record in one step.

The message is an ordinary Celery task message (Celery's own `as_task_v2` builds its
headers and body; kombu's Redis transport envelope wraps it), pushed onto the queue by
a Lua script that also writes the dedupe mark. So two deliveries of one event queue it
once, and a failed push leaves no mark: the sender's retry goes through.

The same step records the work in a ledger (`PREFIX:pending`), which publishing its
result or error clears. kombu's Redis transport pops a message (BRPOP) before it records
it as unacked, so a worker killed, or a connection dropped, in between loses it; the
reaper (`requeue_stalled`, run by every worker) queues again any recorded work whose
message is in neither the queue nor the unacked set after VISIBILITY_TIMEOUT. Running
twice is harmless: idempotency keys and the publish-once mark see to that.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from typing import Any

import redis
from celery import Celery

from worker.celery_app import QUEUE, queue_key
from worker.errors import QueueUnavailable
from worker.settings import Settings
from worker.streams import ledger_keys

log = logging.getLogger("stripe_worker.queue")
MAX_REAP_SCAN = 20_000  # queue length above which the reaper waits for the backlog to drain

_ENQUEUE_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
return 1
"""



class Enqueuer:
    """Puts task messages on the Celery queue in Redis, deduped by a mark under the prefix."""

    def __init__(self, app: Celery, client: redis.Redis, settings: Settings) -> None:
        self.app = app
        self.client = client
        self.settings = settings
        self.queue = queue_key(settings)
        self._script = client.register_script(_ENQUEUE_ONCE)

    def task_message(self, task_name: str, kwargs: dict[str, Any], summary: str = "",
                     task_id: str | None = None) -> bytes:
        """kombu's Redis envelope around Celery's protocol-2 message, as `apply_async` makes."""
        task_id = task_id or str(uuid.uuid4())
        message = self.app.amqp.as_task_v2(
            task_id, task_name, args=(), kwargs=kwargs,
            # Celery logs argsrepr on receipt: ids only, never a payload.
            argsrepr="()", kwargsrepr=summary or "{...}",
        )
        body = json.dumps(message.body, separators=(",", ":")).encode()
        envelope = {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": message.headers,
            "properties": {
                **message.properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": QUEUE},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return json.dumps(envelope, separators=(",", ":")).encode()

    def enqueue_once(self, dedupe_id: str, task_name: str, work: dict[str, Any],
                     summary: str = "") -> bool:
        """Queue the task unless `dedupe_id` was queued before; True when queued now.

        QueueUnavailable when Redis does not answer: nothing was queued or marked.
        """
        work = dict(work, ticket=dedupe_id)
        task_id = str(uuid.uuid4())
        payload = self.task_message(task_name, {"work": work}, summary, task_id)
        record = json.dumps({"task": task_name, "work": work, "task_id": task_id})
        mark = self.settings.key("seen", dedupe_id)
        try:
            queued = self._script(keys=[mark, self.queue, *ledger_keys(self.settings)],
                                  args=[payload, int(time.time()), self.settings.dedupe_ttl,
                                        dedupe_id, record])
        except redis.RedisError as exc:
            log.warning("could not queue %s: %s: %s", dedupe_id, exc.__class__.__name__, exc)
            raise QueueUnavailable(
                f"the queue at REDIS_URL did not answer ({exc.__class__.__name__}); "
                "nothing was queued, retry later"
            ) from None
        return bool(queued)

    def requeue_stalled(self, older_than: float | None = None) -> list[str]:
        """Queue again recorded work whose message is gone; returns the tickets requeued."""
        older_than = self.settings.visibility_timeout if older_than is None else older_than
        scores, works = ledger_keys(self.settings)
        stalled = self.client.zrangebyscore(scores, "-inf", time.time() - older_than,
                                            start=0, num=1000)
        if not stalled:
            return []
        if self.client.llen(self.queue) > MAX_REAP_SCAN:
            # A backlog: old work is most likely waiting its turn, and listing the queue
            # would be costly. Lost messages are found once it drains.
            return []
        alive = self._task_ids_held()
        requeued = []
        for raw_ticket in stalled:
            ticket = raw_ticket.decode() if isinstance(raw_ticket, bytes) else raw_ticket
            raw = self.client.hget(works, ticket)
            if raw is None:  # published meanwhile
                self.client.zrem(scores, ticket)
                continue
            record = json.loads(raw)
            now = time.time()
            if record["task_id"] in alive:  # still queued, retrying or running: only slow
                self.client.zadd(scores, {ticket: now}, xx=True)
                continue
            record["task_id"] = str(uuid.uuid4())
            payload = self.task_message(record["task"], {"work": record["work"]},
                                        f"requeued {ticket}", record["task_id"])
            pipe = self.client.pipeline(transaction=True)
            pipe.lpush(self.queue, payload)
            pipe.hset(works, ticket, json.dumps(record))
            pipe.zadd(scores, {ticket: now}, xx=True)
            pipe.execute()
            log.warning("requeued %s: its message was lost (%s)", ticket, record["task"])
            requeued.append(ticket)
        return requeued

    def _task_ids_held(self) -> set[str]:
        """Task ids of every message in the queue or held unacked by a worker."""
        prefix = self.queue[: -len(QUEUE)]
        ids = set()
        for raw in self.client.lrange(self.queue, 0, -1):
            ids.add(json.loads(raw)["headers"]["id"])
        for raw in self.client.hvals(prefix + "unacked"):
            ids.add(json.loads(raw)[0]["headers"]["id"])
        return ids
