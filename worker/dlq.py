"""The error stream as a dead-letter queue: list failures, replay them once each.

A replay queues the failed work again as it was (same idempotency key, same work id),
so it can never make a second customer or a second result entry; the error entry is
marked replayed, and replaying it again is a no-op.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from worker.errors import InvalidMessage, UsageError
from worker.keys import ERRORS
from worker.queue import Enqueuer
from worker.settings import Settings
from worker.streams import decode_entry
from worker.terminal import printable
from worker.work import Work

# An XRANGE entry as redis-py types it: the id and fields may be None (RESP3 nulls).
_Raw = tuple[bytes | str | None, Mapping[Any, Any] | None]

BATCH = 500  # error entries read per round trip by `replay --all`


@dataclass(frozen=True)
class Failure:
    entry_id: str
    fields: dict[str, str]
    replayed: dict[str, Any] | None

    def line(self) -> str:
        """One line for a terminal."""
        f = self.fields
        state = "replayed" if self.replayed else "failed"
        return printable(
            f"{self.entry_id}  {state:8}  {f.get('component', ''):26} "
            f"{f.get('error_type', ''):22} {f.get('source', '')}:{f.get('source_id', '')}"
            f"  {f.get('error_message', '')[:80]}"
        )


def _ids(raw: Sequence[_Raw]) -> list[str]:
    return [i.decode() if isinstance(i, bytes) else str(i) for i, _ in raw]


def _failures(client: redis.Redis, settings: Settings, raw: Sequence[_Raw]) -> list[Failure]:
    """Failures of XRANGE-shaped `raw`, with their replay marks, in the order given."""
    ids = _ids(raw)
    marks = client.mget([settings.keys.replayed(i) for i in ids]) if ids else []
    return [
        Failure(entry_id, decode_entry(fields or {}), json.loads(mark) if mark else None)
        for entry_id, (_, fields), mark in zip(ids, raw, marks, strict=True)
    ]


def list_failures(client: redis.Redis, settings: Settings, count: int = 100) -> list[Failure]:
    """The newest `count` error entries, oldest first, with their replay marks."""
    raw = client.xrevrange(settings.keys.stream(ERRORS), count=count) or []
    return list(reversed(_failures(client, settings, raw)))


def all_failures(
    client: redis.Redis, settings: Settings, batch: int = BATCH
) -> Iterator[list[Failure]]:
    """Every error entry, oldest first, `batch` at a time, however many there are."""
    start = "-"
    while True:
        raw = client.xrange(settings.keys.stream(ERRORS), start, "+", count=batch)
        if not raw:
            return
        yield _failures(client, settings, raw)
        start = "(" + _ids(raw)[-1]


def replay_all(
    client: redis.Redis, settings: Settings, enqueuer: Enqueuer, batch: int = BATCH
) -> Iterator[tuple[str, str]]:
    """Replay every failure not replayed yet: (entry id, what was done), entry by entry."""
    for failures in all_failures(client, settings, batch):
        for failure in failures:
            if failure.replayed:
                continue
            if failure.fields.get("error_type") == InvalidMessage.error_type:
                yield failure.entry_id, "quarantined message: not work, not replayed"
                continue
            queued = replay(client, settings, enqueuer, failure.entry_id)
            yield failure.entry_id, "queued again" if queued else "already replayed"


def replay(client: redis.Redis, settings: Settings, enqueuer: Enqueuer, entry_id: str) -> bool:
    """Queue the failed work of `entry_id` again; False when it was replayed before."""
    mark = settings.keys.replayed(entry_id)
    if client.exists(mark):
        return False
    found = client.xrange(settings.keys.stream(ERRORS), entry_id, entry_id)
    if not found:
        raise UsageError(f"no entry {entry_id} in {settings.keys.stream(ERRORS)}")
    fields = decode_entry(found[0][1] or {})
    if fields.get("error_type") == InvalidMessage.error_type:
        raise UsageError(
            f"entry {entry_id} is a quarantined queue message, not work: nothing to replay "
            "(the message is in its `message` field)"
        )
    try:
        work = Work.from_json(json.loads(fields["task_kwargs"])["work"])
    except (KeyError, ValueError, TypeError, InvalidMessage):
        raise UsageError(f"entry {entry_id} does not say what to replay") from None
    replay = work.replayed(entry_id)
    queued = enqueuer.enqueue_once(replay, summary=f"replay of {entry_id}")
    if queued:
        # Kept as long as the published-once marks: a replay within that time is a no-op.
        now, ttl = int(time.time()), settings.customer_memory_ttl
        pipe = client.pipeline(transaction=False)
        pipe.set(mark, json.dumps({"at": now, "replay": replay.replay}), ex=ttl)
        pipe.zadd(settings.keys.replayed_index, {entry_id: now})
        pipe.zremrangebyscore(settings.keys.replayed_index, "-inf", now - ttl)
        pipe.execute()
    return queued
