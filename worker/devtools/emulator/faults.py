"""The faults the emulator injects on request: errors, hangs, latency, rate limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.devtools.emulator.ratelimit import ModeBuckets


@dataclass
class Faults:
    status: int | list[int] = 500  # a list: each fault picks one at random
    count: int = 0
    rate: float = 0.0
    should_retry: str | None = None
    hang_count: int = 0
    hang_seconds: float = 30.0
    latency_ms: float = 0.0
    rate_limit: Any = 0.0  # as set: "stripe", req/s for both modes, or per mode; 0 = none
    concurrency: int = 0  # requests in flight at once per key mode; 0 = no limit
    _buckets: ModeBuckets = field(default_factory=lambda: ModeBuckets({}))


def _statuses(value: Any) -> int | list[int]:
    return [int(v) for v in value] if isinstance(value, list) else int(value)


FAULT_TYPES: dict[str, Callable[[Any], object]] = {
    "status": _statuses,
    "count": int,
    "rate": float,
    "should_retry": str,
    "hang_count": int,
    "hang_seconds": float,
    "latency_ms": float,
    "rate_limit": lambda value: value,
    "concurrency": int,
}
