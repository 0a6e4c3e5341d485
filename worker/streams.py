"""The streams as the operator sees them: each consumer group's lag (`status`, the trim).

Reading them as an agent does (consumer groups, acks, claims, dead letters) is
stripe_worker_agent/consumer.py, which the wheel installs under that name so an agent's
own `worker.py` cannot shadow it; its names are here too for the project's own readers
(`tail`, `dlq`, the console).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from stripe_worker_agent.consumer import (
    Entry,
    RunStats,
    StreamConsumer,
    as_text,
    decode_entries,
    decode_entry,
    decode_read,
)

__all__ = [
    "Entry",
    "GroupLag",
    "RunStats",
    "StreamConsumer",
    "decode_entries",
    "decode_entry",
    "decode_read",
    "group_lags",
]


@dataclass(frozen=True)
class GroupLag:
    """How far a consumer group is behind on a stream."""

    name: str
    lag: int | None  # entries not delivered yet; None when Redis cannot tell
    pending: int  # delivered, not acknowledged
    last_delivered: str


def group_lags(client: redis.Redis, stream_key: str) -> list[GroupLag]:
    """The consumer groups of a stream and their lag; [] when the stream does not exist."""
    try:
        groups = client.xinfo_groups(stream_key)
    except redis.ResponseError:
        return []
    return [
        GroupLag(
            as_text(g["name"]),
            None if g.get("lag") is None else int(g["lag"]),
            int(g["pending"]),
            as_text(g["last-delivered-id"]),
        )
        for g in groups
    ]
