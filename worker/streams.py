"""Redis Streams: what downstream agents read, each piece of work published exactly once.

`publish_result` appends an entry and records the work id in one Lua step, so a task
that ran twice (killed after publishing, before its ack) still appends once.
Agents read with `StreamConsumer`: a consumer group, acknowledgement, and entries
left pending by a dead consumer claimed with XAUTOCLAIM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from worker.settings import Settings

CUSTOMERS = "customers"
EVENTS = "events"
ERRORS = "errors"
STREAMS = (CUSTOMERS, EVENTS, ERRORS)

# Redis 7 has no idempotent XADD, so the mark and the entry go in together.
# It also clears the work's ticket from the ledger of queued work (worker/queue.py).
_PUBLISH_ONCE = """
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('HDEL', KEYS[4], ARGV[3])
end
local seen = redis.call('GET', KEYS[2])
if seen then return {0, seen} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
return {1, id}
"""


@dataclass(frozen=True)
class Published:
    """Where a piece of work's entry is; `new` is False when it had been published before."""

    entry_id: str
    new: bool


def ledger_keys(settings: Settings) -> tuple[str, str]:
    """The ledger of queued work (worker/queue.py): tickets by time, and their work."""
    return settings.key("pending"), settings.key("pending", "work")


def stream_key(settings: Settings, stream: str) -> str:
    """`customers` -> `stripe:customers`; a full key passes through unchanged."""
    if stream.startswith(settings.stream_prefix + ":"):
        return stream
    return settings.key(stream)


def publish_result(
    client: redis.Redis, settings: Settings, stream: str, work_id: str,
    fields: Mapping[str, Any], ticket: str = "",
) -> Published:
    """Append `fields` to `stream` once per `work_id`, however often this is called; the
    queued work `ticket` is done."""
    pairs: list[str] = []
    for name, value in fields.items():
        pairs += [name, as_field(value)]
    mark = settings.key("published", stream, work_id)
    new, entry_id = client.eval(  # type: ignore[misc]
        _PUBLISH_ONCE, 4, stream_key(settings, stream), mark, *ledger_keys(settings),
        settings.stream_maxlen, settings.customer_memory_ttl, ticket, *pairs,
    )
    return Published(_text(entry_id), bool(new))


def as_field(value: Any) -> str:
    """Stream fields are strings: JSON for objects, '' for None, 'true'/'false' for booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


class StreamConsumer:
    """Read a stream with a consumer group; each entry reaches one consumer until acked.

    ``read`` first claims entries that another consumer left pending for longer than
    ``min_idle_ms`` (it died before acking), then reads new ones.
    """

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str, *,
                 min_idle_ms: int = 60_000, start: str = "0") -> None:
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
        claimed = self.client.xautoclaim(self.stream, self.group, self.consumer,
                                         self.min_idle_ms, "0-0", count=count)
        entries = [(_text(i), decode_entry(f)) for i, f in claimed[1] if f is not None]
        if entries:
            return entries
        answer = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                        count=count, block=block_ms)
        for _stream, items in answer or []:
            entries += [(_text(i), decode_entry(f)) for i, f in items]
        return entries

    def ack(self, entry_ids: Iterable[str]) -> int:
        ids = list(entry_ids)
        return int(self.client.xack(self.stream, self.group, *ids)) if ids else 0
