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

from worker.errors import InvalidMessage, UsageError
from worker.keys import ERRORS
from worker.queue import Enqueuer
from worker.settings import Settings
from worker.streams import decode_entry
from worker.work import Work


@dataclass(frozen=True)
class Failure:
    entry_id: str
    fields: dict[str, str]
    replayed: dict[str, Any] | None

    def line(self) -> str:
        """One line for a terminal."""
        f = self.fields
        state = "replayed" if self.replayed else "failed"
        return (
            f"{self.entry_id}  {state:8}  {f.get('component', ''):26} "
            f"{f.get('error_type', ''):22} {f.get('source', '')}:{f.get('source_id', '')}"
            f"  {f.get('error_message', '')[:80]}"
        )


def list_failures(client: redis.Redis, settings: Settings, count: int = 100) -> list[Failure]:
    """The newest `count` error entries, oldest first, with their replay marks."""
    raw = client.xrevrange(settings.keys.stream(ERRORS), count=count)
    ids = [i.decode() if isinstance(i, bytes) else i for i, _ in raw]
    marks = client.hmget(settings.keys.replayed, ids) if ids else []
    return [
        Failure(entry_id, decode_entry(fields), json.loads(mark) if mark else None)
        for entry_id, (_, fields), mark in reversed(list(zip(ids, raw, marks, strict=True)))
    ]


def replay(client: redis.Redis, settings: Settings, enqueuer: Enqueuer, entry_id: str) -> bool:
    """Queue the failed work of `entry_id` again; False when it was replayed before."""
    if client.hexists(settings.keys.replayed, entry_id):
        return False
    found = client.xrange(settings.keys.stream(ERRORS), entry_id, entry_id)
    if not found:
        raise UsageError(f"no entry {entry_id} in {settings.keys.stream(ERRORS)}")
    fields = decode_entry(found[0][1])
    try:
        work = Work.from_json(json.loads(fields["task_kwargs"])["work"])
    except (KeyError, ValueError, TypeError, InvalidMessage):
        raise UsageError(f"entry {entry_id} does not say what to replay") from None
    replay = work.replayed(entry_id)
    queued = enqueuer.enqueue_once(replay, summary=f"replay of {entry_id}")
    if queued:
        client.hset(
            settings.keys.replayed,
            entry_id,
            json.dumps({"at": int(time.time()), "replay": replay.replay}),
        )
    return queued
