"""Reading the streams, as downstream agents do: consumer groups, acks, and claims.

Agents read with `StreamConsumer`: a consumer group, acknowledgement, and entries left
pending by a dead consumer claimed with XAUTOCLAIM. Writing is the worker's
(tasks/publish.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


class StreamConsumer:
    """Read a stream with a consumer group; each entry reaches one consumer until acked.

    ``read`` first claims entries that another consumer left pending for longer than
    ``min_idle_ms`` (it died before acking), then reads new ones.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        min_idle_ms: int = 60_000,
        start: str = "0",
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.min_idle_ms = min_idle_ms
        try:
            client.xgroup_create(stream, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 10, block_ms: int | None = None) -> list[tuple[str, dict]]:
        """Up to `count` entries: claimed from dead consumers first, then new ones."""
        claimed = self.client.xautoclaim(
            self.stream, self.group, self.consumer, self.min_idle_ms, "0-0", count=count
        )
        entries = [(_text(i), decode_entry(f)) for i, f in claimed[1] if f is not None]
        if entries:
            return entries
        answer = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        for _stream, items in answer or []:
            entries += [(_text(i), decode_entry(f)) for i, f in items]
        return entries

    def ack(self, entry_ids: Iterable[str]) -> int:
        ids = list(entry_ids)
        return int(self.client.xack(self.stream, self.group, *ids)) if ids else 0
