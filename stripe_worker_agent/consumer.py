"""Reading the streams, as downstream agents do: consumer groups, acks, claims, dead letters.

Agents read with `StreamConsumer`: a consumer group, acknowledgement after the work is
done, entries left pending by a dead consumer claimed with XAUTOCLAIM, and `run`, a loop
that survives its handler: an entry whose handler raises stays pending and is tried
again after `min_idle_ms`; after `max_deliveries` it is moved, with the reason, to the
group's dead-letter stream (`PREFIX:<stream>:dead:<group>`) and acknowledged. Writing is
the worker's (tasks/publish.py).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import redis

log = logging.getLogger("stripe_worker.streams")


def as_text(value: Any) -> str:
    """A Redis reply (bytes, or str with decode_responses) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in fields.items()}


def decode_entries(
    raw: Iterable[tuple[object, Mapping[Any, Any] | None]] | None,
) -> list[tuple[str, dict[str, str]]]:
    """An XRANGE / XREVRANGE answer as (id, fields) decoded. redis-py types the answer, an
    id and its fields as possibly None (RESP3 nulls); Redis sends none of them for a range,
    and an entry without fields would be one trimmed mid-reply: skipped, not an error."""
    return [(as_text(i), decode_entry(f)) for i, f in raw or () if f is not None]


def decode_read(answer: Iterable[Any] | None) -> list[tuple[str, dict[str, str]]]:
    """An XREAD / XREADGROUP answer as (id, fields) decoded, the streams' entries in order.
    The clients speak RESP2, where it is a list of [stream, entries] (redis-py's type allows
    RESP3's dict too)."""
    return [(as_text(i), decode_entry(f)) for _s, items in answer or () for i, f in items]


def dead_letter(stream_key: str, group: str) -> str:
    """`stripe:customers` + `agents` -> `stripe:customers:dead:agents`."""
    return f"{stream_key}:dead:{group}"


@dataclass(frozen=True)
class Entry:
    """One stream entry as a consumer got it; `deliveries` counts this one."""

    id: str
    fields: dict[str, str]
    deliveries: int = 1

    @property
    def work_id(self) -> str:
        """The piece of work's stable id: the same in every entry about it; dedupe by it."""
        return self.fields.get("work_id", "")

    @property
    def traceparent(self) -> str:
        """The W3C traceparent of the span that published it ('' when tracing was off): a
        span of yours made its child continues the delivery's trace."""
        return self.fields.get("traceparent", "")

    def json(self, name: str) -> Any:
        """A JSON field (`Response`, `Headers`, `event`, ...) decoded; None when empty."""
        raw = self.fields.get(name)
        return json.loads(raw) if raw else None


@dataclass
class RunStats:
    handled: int = 0  # acknowledged after the handler returned
    failed: int = 0  # handler raised (each delivery counts)
    dead: int = 0  # moved to the dead-letter stream


class StreamConsumer:
    """Read a stream with a consumer group; each entry reaches one consumer until acked.

    ``read`` first claims entries that another consumer left pending for longer than
    ``min_idle_ms`` (it died before acking, or its handler failed), then reads new ones.
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
        max_deliveries: int = 5,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.min_idle_ms = min_idle_ms
        self.max_deliveries = max_deliveries
        self.dead_letter_key = dead_letter(stream, group)
        self._move_dead = client.register_script(
            files(__package__).joinpath("dead_letter.lua").read_text("utf-8")
        )
        try:
            client.xgroup_create(stream, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(
        self, count: int = 10, block_ms: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """Up to `count` (id, fields): claimed from dead consumers first, then new ones."""
        return [(e.id, e.fields) for e in self.fetch(count, block_ms)]

    def fetch(self, count: int = 10, block_ms: int | None = None) -> list[Entry]:
        """Like `read`, as `Entry`s that know how often they were delivered."""
        claimed = self.client.xautoclaim(
            self.stream, self.group, self.consumer, self.min_idle_ms, "0-0", count=count
        )
        live = [(as_text(i), decode_entry(f)) for i, f in claimed[1] if f is not None]
        if live:
            return [Entry(i, f, d) for (i, f), d in zip(live, self._deliveries(live), strict=True)]
        answer = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return [Entry(i, f) for i, f in decode_read(answer)]

    def _deliveries(self, entries: list[tuple[str, dict[str, str]]]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for entry_id, _fields in entries:
            pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        return [int(r[0]["times_delivered"]) if r else 1 for r in pipe.execute()]

    def ack(self, entry_ids: Iterable[str]) -> int:
        ids = list(entry_ids)
        return int(self.client.xack(self.stream, self.group, *ids)) if ids else 0

    def dead_letter(self, entry: Entry, reason: str) -> str | None:
        """Move `entry` to the group's dead-letter stream with `reason`, and ack it; the
        dead letter's id, or None when another consumer acked it first."""
        extra = {
            "dead_entry_id": entry.id,
            "dead_stream": self.stream,
            "dead_group": self.group,
            "dead_deliveries": str(entry.deliveries),
            "dead_reason": reason[:2000],
        }
        pairs = [x for item in {**entry.fields, **extra}.items() for x in item]
        dead_id = self._move_dead(
            keys=[self.stream, self.dead_letter_key], args=[self.group, entry.id, *pairs]
        )
        return as_text(dead_id) if dead_id else None

    def run(
        self,
        handler: Callable[[Entry], object],
        *,
        count: int = 1,
        block_ms: int = 1000,
        stop: threading.Event | None = None,
        limit: int | None = None,
    ) -> RunStats:
        """Hand each entry to `handler` and ack it once the handler returns, until `stop`
        is set, SIGTERM or Ctrl-C (the entry in hand is finished first), or `limit`
        entries are done (acked or dead-lettered). An entry whose handler raises is
        logged and left pending: it comes back after `min_idle_ms`, and on its
        `max_deliveries`-th failure goes to the dead-letter stream with the error."""
        stop = stop or threading.Event()
        stats = RunStats()

        def done() -> bool:
            return stop.is_set() or (limit is not None and stats.handled + stats.dead >= limit)

        with _stop_on_signals(stop):
            while not done():
                try:
                    for entry in self.fetch(count, block_ms):
                        self._handle(handler, entry, stats)
                        if done():  # the rest of the batch is claimed after min_idle_ms
                            break
                except redis.ConnectionError as exc:  # unacked entries come back: go on
                    log.warning("%s: Redis does not answer (%s)", self.stream, exc)
                    stop.wait(1.0)
        return stats

    def _handle(self, handler: Callable[[Entry], object], entry: Entry, stats: RunStats) -> None:
        if entry.deliveries > self.max_deliveries:
            # Its consumers died or stalled on it every time: do not hand it out again.
            reason = f"delivered {entry.deliveries - 1} times and never acknowledged"
            self._bury(entry, reason, stats)
            return
        try:
            handler(entry)
        except Exception as exc:
            stats.failed += 1
            if entry.deliveries >= self.max_deliveries:
                log.exception("%s %s failed for good", self.stream, entry.id)
                self._bury(entry, f"{exc.__class__.__name__}: {exc}", stats)
            else:
                log.exception(
                    "%s %s (work %s) failed on delivery %d of %d; tried again after %d ms",
                    self.stream,
                    entry.id,
                    entry.work_id,
                    entry.deliveries,
                    self.max_deliveries,
                    self.min_idle_ms,
                )
            return
        self.ack([entry.id])
        stats.handled += 1

    def _bury(self, entry: Entry, reason: str, stats: RunStats) -> None:
        if self.dead_letter(entry, reason):
            stats.dead += 1
            log.error(
                "%s %s (work %s) moved to %s: %s",
                self.stream,
                entry.id,
                entry.work_id,
                self.dead_letter_key,
                reason,
            )


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and Ctrl-C set `stop` while the loop runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: stopping after the entry in hand", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
