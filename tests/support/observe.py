"""What a test looks at: the emulator's counters, the streams, the queue, and whether the
pipeline has settled (nothing queued, held or unfinished)."""

from __future__ import annotations

from typing import Any

import redis
import requests

from worker.devtools.emulator import EmulatorServer
from worker.settings import Settings


def faults(emulator: EmulatorServer, **spec: object) -> None:
    """Set the emulator's fault injection through its admin route."""
    requests.post(f"{emulator.url}/_emulator/faults", json=spec, timeout=5).raise_for_status()


def emulator_stats(emulator: EmulatorServer) -> dict[str, Any]:
    return requests.get(f"{emulator.url}/_emulator/stats", timeout=5).json()


def entries(client: redis.Redis, settings: Settings, stream: str) -> list[dict[str, str]]:
    """The fields of every entry on `stream` (`customers`, `events`, `errors`), oldest first."""
    return [fields for _id, fields in client.xrange(settings.keys.stream(stream))]


def queued(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    """The task messages waiting on the Celery queue: [{"task", "kwargs", "id"}...]."""
    from worker.envelope import open_envelope

    found = []
    for raw in client.lrange(settings.keys.queue, 0, -1):
        message_id, task, (_args, kwargs, _embed) = open_envelope(raw)
        found.append({"task": task, "kwargs": kwargs, "id": message_id})
    return found


def settled(client: redis.Redis, settings: Settings) -> bool:
    """True when no work is left to happen: the queue is empty, no worker holds a message
    (kombu's unacked hash), and every accepted delivery has published its result or error
    (the ledger is empty; it also covers a message a worker has fetched but not yet
    recorded). What a test waits on before saying "nothing more happens"."""
    keys = settings.keys
    pipe = client.pipeline(transaction=False)
    pipe.llen(keys.queue)
    pipe.llen(keys.given_back)
    pipe.hlen(keys.unacked)
    pipe.zcard(keys.ledger)
    return not any(pipe.execute())
