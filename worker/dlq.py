"""The error stream as a dead-letter queue: list failures, replay them once each.

A replay queues the failed work again as it was (same idempotency key, same work id),
so it can never make a second customer or a second result entry; the error entry is
marked replayed, and replaying it again is a no-op.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from worker.errors import SpecError
from worker.queue import Enqueuer
from worker.settings import Settings
from worker.streams import ERRORS, decode_entry


@dataclass(frozen=True)
class Failure:
    entry_id: str
    fields: dict[str, str]
    replayed: dict[str, Any] | None


def _replayed_key(settings: Settings) -> str:
    return settings.key(ERRORS, "replayed")


def list_failures(client: redis.Redis, settings: Settings, count: int = 100) -> list[Failure]:
    """The newest `count` error entries, oldest first, with their replay marks."""
    raw = client.xrevrange(settings.key(ERRORS), count=count)
    ids = [i.decode() if isinstance(i, bytes) else i for i, _ in raw]
    marks = client.hmget(_replayed_key(settings), ids) if ids else []
    return [Failure(entry_id, decode_entry(fields), json.loads(mark) if mark else None)
            for entry_id, (_, fields), mark in reversed(list(zip(ids, raw, marks, strict=True)))]


def replay(client: redis.Redis, settings: Settings, enqueuer: Enqueuer, entry_id: str) -> bool:
    """Queue the failed work of `entry_id` again; False when it was replayed before."""
    if client.hexists(_replayed_key(settings), entry_id):
        return False
    found = client.xrange(settings.key(ERRORS), entry_id, entry_id)
    if not found:
        raise SpecError(f"no entry {entry_id} in {settings.key(ERRORS)}")
    fields = decode_entry(found[0][1])
    try:
        task = fields["task"]
        work = json.loads(fields["task_kwargs"])["work"]
    except (KeyError, ValueError):
        raise SpecError(f"entry {entry_id} does not say what to replay") from None
    work["replay"] = int(work.get("replay", 0)) + 1
    queued = enqueuer.enqueue_once(f"replay:{entry_id}", task, work,
                                   summary=f"replay of {entry_id}")
    if queued:
        client.hset(_replayed_key(settings), entry_id,
                    json.dumps({"at": int(time.time()), "replay": work["replay"]}))
    return queued
