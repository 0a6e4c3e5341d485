"""Publishing: each piece of work ends in exactly one stream entry, however often it ran.

`publish_result` appends an entry and records the work id in one Lua step
(publish_once.lua), so a task that ran twice (killed after publishing, before its ack)
still appends once; the same step clears the delivery from the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from worker.connections import lua_script
from worker.settings import Settings


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
        self._script = lua_script(client, "tasks", "publish_once.lua")

    def publish(
        self, stream: str, work_id: str, fields: Mapping[str, Any], delivery_id: str = ""
    ) -> Published:
        """Append `fields` to `stream` once per `work_id`; the delivery is done."""
        keys = self.settings.keys
        pairs: list[str] = []
        for name, value in fields.items():
            pairs += [name, as_field(value)]
        new, entry_id = self._script(
            keys=[
                keys.stream(stream),
                keys.published(stream, work_id),
                keys.ledger,
                keys.ledger_work,
            ],
            args=[
                self.settings.stream_maxlen,
                self.settings.customer_memory_ttl,
                delivery_id,
                *pairs,
            ],
        )
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return Published(text, bool(new))
