"""Publishing: each piece of work ends in exactly one stream entry, however often it ran.

`publish` appends an entry and records the work id in one Lua step (publish_once.lua), so
a task that ran twice (killed after publishing, before its ack) still appends once; the
same step clears the delivery from the ledger and trims the stream.

Trimming never drops what a consumer group has not read: a stream with groups is cut only
below the oldest entry a group still needs (undelivered, or delivered and not acked), and
to about STREAM_MAXLEN beyond that; a stream without groups is cut to about STREAM_MAXLEN.
A lagging group makes its stream grow up to STREAM_HARD_MAXLEN; past it the oldest entries
are dropped even unread, counted in `PREFIX:streams:dropped`, and logged. The error stream
is never trimmed; a full Redis can refuse the step (the task retries, and its work stays
in the ledger for the reaper), never make it drop a failure.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from worker import tracing
from worker.connections import composed_script, lua_script, replicated
from worker.keys import ERRORS
from worker.schema import SCHEMA_VERSION
from worker.settings import Settings
from worker.streams import group_lags
from worker.trail import TrailLine

log = logging.getLogger("stripe_worker.publish")

FLOOR_CACHE_MS = 1000  # how stale the trim floor may be: groups only move forward
GROWTH_WARNING_EVERY = 60.0  # seconds between warnings that a lagging group holds a stream


@dataclass(frozen=True)
class DoneWith:
    """What a piece of work is done with once its entry is published, let go of in the
    publish's own round trip: (key, member) of sorted sets, such as kombu's unacked index
    and a key's calls in flight (tasks/concurrency_cap.py), and (key, field) of
    hashes, such as kombu's unacked messages."""

    zrem: tuple[tuple[str, str], ...] = ()
    hdel: tuple[tuple[str, str], ...] = ()

    def __add__(self, other: DoneWith) -> DoneWith:
        return DoneWith(self.zrem + other.zrem, self.hdel + other.hdel)


@dataclass(frozen=True)
class Published:
    """Where a piece of work's entry is; `new` is False when it had been published before."""

    entry_id: str
    new: bool


def as_field(value: Any) -> str:
    """Stream fields are strings: JSON for objects, '' for None, 'true'/'false' for booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


class Publisher:
    """Appends entries to the streams under one STREAM_PREFIX, once per work id."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        # With REDIS_MIN_REPLICAS, NotReplicated (a RedisError) makes the task retry;
        # publish-once makes the retry append nothing and wait for the first append.
        self._script = replicated(
            lua_script(client, "tasks", "publish_once.lua"),
            settings.redis_min_replicas,
            fence=1,  # the publish-once mark
            fence_ttl=settings.customer_memory_ttl,
        )
        self._with_trail = replicated(
            composed_script(
                client,
                "tasks",
                "publish_with_trail.lua",
                ("publish_once", "tasks", "publish_once.lua"),
                ("trail", "worker", "trail.lua"),
            ),
            settings.redis_min_replicas,
            fence=1,
            fence_ttl=settings.customer_memory_ttl,
        )
        self._warned: dict[str, float] = {}

    def publish(
        self,
        stream: str,
        work_id: str,
        fields: Mapping[str, Any],
        delivery_id: str = "",
        *,
        remember: tuple[str, str] | None = None,
        trail: TrailLine | None = None,
        done_with: DoneWith | None = None,
    ) -> Published:
        """Append `fields` to `stream` once per `work_id`; the delivery is done.

        Every entry carries `schema_version` and `work_id`, the id agents dedupe by; with
        tracing on, `traceparent` too: this publish's span, for an agent to continue from.
        In the same step (one round trip, publish_with_trail.lua), `remember` writes
        (key, value) for CUSTOMER_MEMORY_TTL, `trail` appends its line, the entry's id
        in place of its placeholder, and what the work is `done_with` is let go of (on
        every path: a work published before is done with it too)."""
        attributes = {
            "messaging.operation.type": "send",
            "messaging.destination.name": self.settings.keys.stream(stream),
            "stripe_worker.work_id": work_id,
        }
        with tracing.span(f"publish {stream}", "producer", attributes=attributes) as span:
            published = self._publish(
                stream, work_id, fields, delivery_id, remember, trail, done_with or DoneWith()
            )
            tracing.annotate(
                span,
                **{"messaging.message.id": published.entry_id, "stripe_worker.new": published.new},
            )
            return published

    def _publish(
        self,
        stream: str,
        work_id: str,
        fields: Mapping[str, Any],
        delivery_id: str,
        remember: tuple[str, str] | None,
        trail: TrailLine | None,
        done_with: DoneWith,
    ) -> Published:
        keys = self.settings.keys
        pairs = ["schema_version", SCHEMA_VERSION, "work_id", work_id]
        traceparent = tracing.traceparent()
        if traceparent:
            pairs += [tracing.TRACEPARENT, traceparent]
        for name, value in fields.items():
            pairs += [name, as_field(value)]
        maxlen = 0 if stream == ERRORS else self.settings.stream_maxlen
        script_keys = [
            keys.stream(stream),
            keys.published(stream, work_id),
            keys.ledger,
            keys.ledger_work,
            keys.trim_floor(stream),
            keys.dropped,
        ]
        args = [
            maxlen,
            self.settings.stream_hard_maxlen,
            self.settings.customer_memory_ttl,
            FLOOR_CACHE_MS,
            stream,
            delivery_id,
            *pairs,
        ]
        if remember is None and trail is None and not (done_with.zrem or done_with.hdel):
            new, entry_id, length, dropped = self._script(keys=script_keys, args=args)
        else:
            memory_key, memory = remember or (script_keys[1], "")
            trail_keys, trail_args = (trail.keys, trail.args) if trail else ([], [])
            pairs_done = (*done_with.zrem, *done_with.hdel)
            new, entry_id, length, dropped = self._with_trail(
                keys=[*script_keys, memory_key, *(k for k, _ in pairs_done), *trail_keys],
                args=[
                    len(args),
                    memory,
                    self.settings.customer_memory_ttl,
                    trail.placeholder if trail else "",
                    len(done_with.zrem),
                    len(done_with.hdel),
                    *(member for _, member in pairs_done),
                    *args,
                    *trail_args,
                ],
            )
        if maxlen and (dropped or length > 2 * maxlen):
            self._warn_lagging(stream, int(length), int(dropped))
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return Published(text, bool(new))

    def _warn_lagging(self, stream: str, length: int, dropped: int) -> None:
        now = time.monotonic()
        if not dropped and now - self._warned.get(stream, -GROWTH_WARNING_EVERY) < (
            GROWTH_WARNING_EVERY
        ):
            return
        self._warned[stream] = now
        key = self.settings.keys.stream(stream)
        lagging = ", ".join(
            f"{g.name} ({g.lag} unread, {g.pending} unacked)"
            for g in group_lags(self.client, key)
            if g.lag or g.pending
        )
        if dropped:
            log.error(
                "%s: dropped %d entries no consumer group had read (STREAM_HARD_MAXLEN %d); "
                "lagging groups: %s; the count is in %s",
                key,
                dropped,
                self.settings.stream_hard_maxlen,
                lagging or "none left",
                self.settings.keys.dropped,
            )
        else:
            log.warning(
                "%s holds %d entries (STREAM_MAXLEN %d) because consumer groups lag: %s; "
                "at STREAM_HARD_MAXLEN %d the oldest unread are dropped",
                key,
                length,
                self.settings.stream_maxlen,
                lagging,
                self.settings.stream_hard_maxlen,
            )
