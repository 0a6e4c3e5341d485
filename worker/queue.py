"""Queueing work exactly once: dedupe and enqueue in one Redis round trip.

The message is an ordinary Celery task message (Celery's own `as_task_v2` builds its
headers and body; kombu's Redis transport envelope wraps it), pushed onto the queue by
a Lua script that also writes the dedupe mark. So two deliveries of one event queue it
once, and a failed push leaves no mark: the sender's retry goes through.
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

log = logging.getLogger("stripe_worker.queue")

_ENQUEUE_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
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

    def task_message(self, task_name: str, kwargs: dict[str, Any], summary: str = "") -> bytes:
        """kombu's Redis envelope around Celery's protocol-2 message, as `apply_async` makes."""
        task_id = str(uuid.uuid4())
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
        payload = self.task_message(task_name, {"work": work}, summary)
        mark = self.settings.key("seen", dedupe_id)
        try:
            queued = self._script(keys=[mark, self.queue],
                                  args=[payload, int(time.time()), self.settings.dedupe_ttl])
        except redis.RedisError as exc:
            log.warning("could not queue %s: %s: %s", dedupe_id, exc.__class__.__name__, exc)
            raise QueueUnavailable(
                f"the queue at REDIS_URL did not answer ({exc.__class__.__name__}); "
                "nothing was queued, retry later"
            ) from None
        return bool(queued)

    def depth(self) -> int:
        return int(self.client.llen(self.queue))
