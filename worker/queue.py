"""Queueing work exactly once, and never losing it: dedupe, enqueue and record in one step.

The message is an ordinary Celery task message (worker/envelope.py), pushed onto the
queue by a Lua script (enqueue_once.lua) that also writes the dedupe mark. So two
deliveries of one event queue it once, and a failed push leaves no mark: the sender's
retry goes through.

Signups jump the queue: a Create Customer is pushed to the end workers take from next,
everything else (event enrichments, CLI work, Celery's retries) to the far end. One list,
so one fetch (the transport's BLMOVE) and one crash-recovery path serve both; a burst of
events (Stripe re-sending three days of them) never delays a new user's customer by more
than the calls already in flight and paced. Signups among themselves go newest first.

The same step records the work in a ledger (`PREFIX:pending`), which publishing its
result or error clears; tasks/recovery.py queues again what a crash lost.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from redis.exceptions import NoScriptError

from worker import tracing
from worker.connections import (
    RoundTrip,
    check_replicas,
    composed_script,
    replica_wait_commands,
    replicated,
)
from worker.envelope import new_message_id, task_message
from worker.errors import NotReplicated, QueueUnavailable
from worker.keys import QUEUE
from worker.settings import Settings
from worker.trail import Trail
from worker.work import CREATE_CUSTOMER_TASK, Work

log = logging.getLogger("stripe_worker.queue")


def ledger_record(work: Work, message_id: str, traceparent: str | None = None) -> str:
    """What the ledger keeps of a delivery: its work, the message that carries it, and its
    trace (so work queued again after a lost message stays in the delivery's trace). The
    work's JSON made once (worker/work.py) is spliced in."""
    trace = f',"traceparent":{json.dumps(traceparent)}' if traceparent else ""
    return f'{{"work":{work.json_text},"message_id":{json.dumps(message_id)}{trace}}}'


class Enqueuer:
    """Puts task messages on the Celery queue in Redis, deduped by a mark under the prefix."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = settings.keys
        # The trail's line is written in the same call (enqueue_with_trail.lua).
        self._script = composed_script(
            client,
            "worker",
            "enqueue_with_trail.lua",
            ("enqueue_once", "worker", "enqueue_once.lua"),
            ("trail", "worker", "trail.lua"),
        )
        # With REDIS_MIN_REPLICAS, a duplicate waits too: its first delivery may have been
        # answered 503 for want of a replica, and its retry must not get 200 before it has one.
        self._replicas = settings.redis_min_replicas
        self._run_alone = replicated(self._script, self._replicas, 0, settings.dedupe_ttl)
        self.trail = Trail(client, settings)
        self._round_trip = RoundTrip(client)

    def enqueue_once(self, work: Work, summary: str = "", origin: str = "") -> bool:
        """Queue `work` unless its delivery was queued before; True when queued now.

        `origin` names the trail's first step when the work did not arrive as a delivery
        (`reconciled`: listed from Stripe's events by tasks/reconcile.py).
        QueueUnavailable when Redis does not answer: nothing was queued or marked.
        """
        if not tracing.enabled():  # the receiver's every delivery: no span's attributes made
            return self._enqueue_once(work, summary, origin, None)
        attributes = {
            "messaging.operation.type": "send",
            "messaging.destination.name": QUEUE,
            "stripe_worker.delivery_id": work.delivery_id,
            "stripe_worker.work_id": work.work_id,
        }
        with tracing.span(f"enqueue {work.task}", "producer", attributes=attributes) as span:
            queued = self._enqueue_once(work, summary, origin, span)
            tracing.annotate(span, **{"stripe_worker.duplicate": not queued})
            return queued

    def _enqueue_once(self, work: Work, summary: str, origin: str, span: object) -> bool:
        message_id = new_message_id()
        if span is not None:
            tracing.annotate(span, **{"messaging.message.id": message_id})
        traceparent = tracing.traceparent()  # the task's span is a child of this one
        keys = self.keys
        script_keys = [keys.seen(work.delivery_id), keys.queue, keys.ledger, keys.ledger_work]
        args: list[bytes | str | int] = [
            task_message(work, message_id, summary, traceparent),
            int(time.time()),
            self.settings.dedupe_ttl,
            work.delivery_id,
            ledger_record(work, message_id, traceparent),
            "next" if work.task == CREATE_CUSTOMER_TASK else "last",
        ]
        step = origin or ("replayed" if work.delivery_id.startswith("replay:") else "received")
        trail = self.trail.queueing_line(work, step, message_id)
        if trail is not None:
            script_keys += trail[0]
            args += trail[1]
        try:
            commands: list[tuple[Any, ...]] = [
                ("EVALSHA", self._script.sha, len(script_keys), *script_keys, *args)
            ]
            if self._replicas:
                fence_ttl = self.settings.dedupe_ttl
                commands += replica_wait_commands(script_keys[0], fence_ttl, self._replicas)
            answer, *waited = self._round_trip.execute(commands)
            if isinstance(answer, NoScriptError):  # a new or flushed Redis: load, run once
                answer = self._run_alone(keys=script_keys, args=args)
            elif isinstance(answer, Exception):
                raise answer
            elif self._replicas:
                check_replicas(waited[-1], self._replicas)
        except NotReplicated as exc:
            log.warning("queued %s, not yet replicated: %s", work.delivery_id, exc.message)
            raise QueueUnavailable(f"{exc.message}; retry later") from None
        except redis.RedisError as exc:
            log.warning("could not queue %s: %s: %s", work.delivery_id, exc.__class__.__name__, exc)
            raise QueueUnavailable(
                f"the queue at REDIS_URL did not answer ({exc.__class__.__name__}); "
                "nothing was queued, retry later"
            ) from None
        queued, trail_error = answer
        if trail_error:  # the work is queued all the same: a lost line is logged
            log.warning("trail of %s not written: %s", work.work_id, _text(trail_error))
        return bool(queued)


def _text(reply: object) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
