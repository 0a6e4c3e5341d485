"""Crash recovery: heartbeats and leases, so a dead worker's work runs again within seconds.

Every worker's main process runs one thread that, every HEARTBEAT_INTERVAL:
1. beats: `PREFIX:worker:<id>` (its facts, expiring after HEARTBEAT_LAPSE) and its score in
   `PREFIX:workers`, on Redis's clock;
2. renews the lease of every message it holds (reserved, waiting a retry's countdown, or
   running): the message's score in kombu's unacked index is set to now;
3. gives back, atomically, every message whose lease has lapsed (its holder stopped
   renewing: killed, stalled, cut off) into `PREFIX:q:given_back`, which workers take
   from before the queue, oldest first;
4. gives back what a dead worker had fetched but not yet recorded (tasks/transport.py),
   and forgets that worker.
Between beats it looks again as soon as the oldest lease or heartbeat lapses, so a message
taken by a worker that dies is the next to be taken at most HEARTBEAT_LAPSE after
the death (its lease was last renewed at or before it), and a slow task on a live worker
is never handed out twice. kombu's own restore (VISIBILITY_TIMEOUT) and the ledger sweep
(tasks/ledger_sweep.py: accepted work whose message is nowhere) stay as last resorts. A worker
only stalled (SIGSTOP) is taken for dead; its second run is harmless (idempotency key, mark).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_shutdown

from tasks.ledger_sweep import requeue_lost
from tasks.worker_state import WorkerState
from worker.connections import lua_script, redis_client
from worker.redis_problems import Outage
from worker.settings import Settings

log = logging.getLogger("stripe_worker.recovery")
RESTORE_BATCH = 200
MIN_WAIT = 0.02  # seconds: between two looks, however soon the next lease lapses


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Recovery:
    """One worker's heartbeat, its leases, and the recovery of dead workers' messages."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        worker_id: str,
        facts: dict[str, Any] | None = None,
        report: Callable[[], dict[str, Any]] | None = None,
        state: WorkerState | None = None,
    ) -> None:
        self.client = client
        self.state = state or WorkerState()
        self.settings = settings
        self.keys = settings.keys
        self.worker_id = worker_id
        self.facts = dict(
            facts or {}, host=socket.gethostname(), pid=os.getpid(), started=round(time.time(), 3)
        )
        self.report = report  # more of the worker's state for each beat (the Stripe pace)
        self._beat = lua_script(client, "tasks", "heartbeat.lua")
        self._release = lua_script(client, "tasks", "release_worker.lua")
        self._give_back = lua_script(client, "tasks", "give_back.lua")
        self._stranded: dict[bytes | str, float] = {}  # fetched, not delivered: since when

    def beat(self, tasks_done: int = 0, **activity: Any) -> float:
        """Refresh this worker's heartbeat (with `activity`: running, waiting, for
        `stripe-worker status`); returns Redis's time."""
        facts = json.dumps(
            dict(
                self.facts,
                tasks_done=tasks_done,
                beat=round(time.time(), 3),
                **self.state.consumer_report(),
                **activity,
            )
        )
        now = float(
            self._beat(
                keys=[self.keys.worker(self.worker_id), self.keys.workers],
                args=[self.worker_id, facts, int(self.settings.heartbeat_lapse * 1000)],
            )
        )
        self.state.clock_offset = now - time.time()
        return now

    def renew(self, tags: list[str], now: float) -> None:
        """Extend the leases of the messages this worker holds."""
        if tags:
            self.client.zadd(self.keys.unacked_index, dict.fromkeys(tags, now), xx=True)

    def restore_lapsed(self, now: float) -> int:
        """Give back every message whose lease lapsed, oldest first."""
        tags = self.client.zrangebyscore(
            self.keys.unacked_index,
            "-inf",
            f"({now - self.settings.heartbeat_lapse}",
            start=0,
            num=RESTORE_BATCH,
        )
        # (redis-py's type for the reply includes WITHSCORES pairs, not asked for here)
        restored = sum(self._restore(tag) for tag in tags if isinstance(tag, (bytes, str)))
        if restored:
            log.warning("gave back %d message(s) whose worker stopped renewing them", restored)
        return restored

    def _restore(self, tag: bytes | str) -> bool:
        keys = self.keys
        restored = False

        def move(pipe: Any) -> None:
            nonlocal restored
            raw = pipe.hget(keys.unacked, tag)
            pipe.multi()
            pipe.zrem(keys.unacked_index, tag)
            pipe.hdel(keys.unacked, tag)
            if raw:
                payload, _exchange, _routing_key = json.loads(raw)
                # As kombu marks a restored message, so Celery says it was redelivered.
                payload["headers"]["redelivered"] = True
                payload["properties"]["delivery_info"]["redelivered"] = True
                pipe.lpush(keys.given_back, json.dumps(payload))
                restored = True

        self.client.transaction(move, keys.unacked)
        return restored

    def release_dead(self, now: float) -> int:
        """Give back what dead workers had fetched; forget them. Returns messages moved."""
        dead = self.client.zrangebyscore(
            self.keys.workers, "-inf", f"({now - self.settings.heartbeat_lapse}"
        )
        moved = 0
        for raw_id in dead:
            worker_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            moved += int(
                self._release(
                    keys=[
                        self.keys.fetched(worker_id),
                        self.keys.given_back,
                        self.keys.workers,
                        self.keys.worker(worker_id),
                    ],
                    args=[worker_id],
                )
            )
            log.warning("worker %s stopped beating: forgotten", worker_id)
        return moved

    def release_self(self) -> int:
        """At a graceful stop: give back what this worker fetched, and leave the roll."""
        return int(
            self._release(
                keys=[
                    self.keys.fetched(self.worker_id),
                    self.keys.given_back,
                    self.keys.workers,
                    self.keys.worker(self.worker_id),
                ],
                args=[self.worker_id],
            )
        )

    def give_back_stranded(self, channels: list[Any]) -> int:
        """Give back what this live worker fetched but could not record as held (Redis
        refused the write, the connection dropped): it would wait for the ledger sweep.
        A message is stranded when it is in the fetched list, not being delivered, for a
        whole heartbeat interval (one in transit is delivered within milliseconds), and is
        not what a pending fetch may have moved (Channel.maybe_unread)."""
        first_seen: dict[bytes | str, float] = {}
        moved = 0
        now = time.monotonic()
        for channel in channels:
            delivering = set(channel.fetched_raw.values())
            for position, raw in enumerate(self.client.lrange(channel.fetched_key, 0, -1)):
                if raw in delivering or channel.maybe_unread(raw, position):
                    continue
                since = self._stranded.get(raw, now)
                if now - since >= self.settings.heartbeat_interval:
                    channel.looked = None  # its next fetch looks for itself
                    back = [channel.fetched_key, self.keys.given_back]
                    moved += int(self._give_back(keys=back, args=[raw]))
                else:
                    first_seen[raw] = since
        self._stranded = first_seen
        if moved:
            log.warning("gave back %d fetched message(s) this worker could not record", moved)
        return moved

    def next_lapse(self, now: float) -> float:
        """Seconds until the oldest lease or heartbeat lapses (at most the interval): the
        next look need not wait for the next beat, so a dead worker's work goes back
        HEARTBEAT_LAPSE after its last renewal, not up to an interval later."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrange(self.keys.unacked_index, 0, 0, withscores=True)
        pipe.zrange(self.keys.workers, 0, 0, withscores=True)
        oldest: list[float] = [score for found in pipe.execute() for _member, score in found]
        interval = self.settings.heartbeat_interval
        if not oldest:
            return interval
        due = min(oldest) + self.settings.heartbeat_lapse - now
        return min(interval, max(MIN_WAIT, due + MIN_WAIT))

    def tick(self, tasks_done: int = 0, **activity: Any) -> float:
        """One beat: renew, give back what lapsed; returns the seconds until the next."""
        now = self.beat(tasks_done, **activity)
        channels = self.state.consuming_channels()
        tags = [tag for channel in channels for tag in channel.qos.held_tags()]
        self.renew(tags, now)
        self.restore_lapsed(now)
        self.release_dead(now)
        self.give_back_stranded(channels)
        return self.next_lapse(now)


def _activity() -> dict[str, int]:
    """Tasks done, running, and retries waiting their countdown in this worker."""
    from celery.worker import state

    return {
        "tasks_done": sum(state.total_count.values()),
        "running": len(state.active_requests),
        # Celery's worker/state.py has it (a WeakSet); celery-types leaves it out.
        "waiting": len(state.scheduled_requests),  # type: ignore[attr-defined]
    }


def _reported(recovery: Recovery) -> dict[str, Any]:
    """The worker's report for this beat; never a reason to miss the beat itself."""
    try:
        return recovery.report() if recovery.report else {}
    except Exception as exc:
        log.debug("heartbeat report: %s", exc.__class__.__name__)
        return {}


def recover_forever(recovery: Recovery, stop: threading.Event) -> None:
    settings = recovery.settings
    sweep_every = max(1.0, settings.visibility_timeout / 4)
    next_sweep = time.monotonic() + sweep_every
    outage = Outage(log, settings.redis_url)
    while True:
        wait = settings.heartbeat_interval
        try:
            wait = recovery.tick(**_activity(), **_reported(recovery))
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + sweep_every
                requeue_lost(recovery.client, settings)
            outage.answered()
        except redis.RedisError as exc:  # Redis away: try again next beat, say so rarely
            outage.failed(exc)
        except Exception:  # a bug of ours must not stop the heartbeat for good
            log.exception("recovery tick failed")
        # Until the next beat is due, the consumer connects or loses its connection (a
        # beat then, so `status` shows it at once), or the worker stops.
        recovery.state.consumer_changed.wait(wait)
        recovery.state.consumer_changed.clear()
        if stop.is_set():
            return


def install_recovery(
    app: Celery,
    settings: Settings,
    facts: dict[str, Any] | None = None,
    report: Callable[[], dict[str, Any]] | None = None,
) -> Recovery:
    """Make `app`'s worker fetch through tasks/transport.py under a worker id of its own,
    start beating now, and give back its fetched work when it stops.

    The heartbeat starts before Celery boots, not when it is ready: in a crash loop a
    worker may die before it is ready, and the next one must already be recovering.
    """
    from tasks.runtime import runtime_of

    worker_id = new_worker_id()
    state = runtime_of(app).state
    app.conf.broker_transport_options = dict(
        app.conf.broker_transport_options, worker_id=worker_id, worker_state=state
    )
    recovery = Recovery(redis_client(settings), settings, worker_id, facts, report, state)
    stop = threading.Event()
    threading.Thread(
        target=recover_forever, args=(recovery, stop), name="recovery", daemon=True
    ).start()

    def on_shutdown(sender: object = None, **_: object) -> None:
        stop.set()
        recovery.state.consumer_changed.set()
        # If Redis is away, its fetched work comes back when its heartbeat lapses.
        with contextlib.suppress(redis.RedisError):
            recovery.release_self()

    worker_shutdown.connect(on_shutdown, weak=False)
    return recovery
