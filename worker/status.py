"""What the system is doing now, read from Redis in two round trips: `stripe-worker status`,
the worker's Redis gauges (tasks/metrics.py) and the console all show this one snapshot.

Every figure is a constant-time read (LLEN, HLEN, ZCARD, XLEN, XINFO GROUPS, one key per
live worker); nothing scans a queue, so it is as cheap with a million messages queued.
In flight and retries waiting are what the live workers say in their heartbeats
(tasks/recovery.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from worker.keys import ERRORS, STREAMS
from worker.settings import Settings
from worker.terminal import printable

# `status` exits 1 when accepted work waits longer than this (the whole retry schedule is
# about 2 minutes at the defaults, so older work is stuck, or the workers are behind).
DEFAULT_MAX_AGE = 600.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class WorkerInfo:
    """One live worker, as its last heartbeat describes it."""

    id: str
    host: str
    pid: int
    pool: str
    concurrency: int
    tasks_done: int
    running: int
    waiting: int
    beat_seconds_ago: float
    # Whether its consumer holds a broker connection, and for how long it has (or has not):
    # a worker that beats but cannot consume takes no work. A heartbeat from before this
    # field counts as consuming.
    consuming: bool = True
    consuming_for_seconds: float | None = None

    def cannot_consume(self, grace: float) -> bool:
        """Its consumer has been down for `grace` seconds or more (a starting worker
        connects within a second or two)."""
        return not self.consuming and (self.consuming_for_seconds or 0.0) >= grace


@dataclass(frozen=True)
class StreamInfo:
    entries: int
    dropped: int = 0  # unread entries dropped past STREAM_HARD_MAXLEN (tasks/publish.py)
    groups: dict[str, dict[str, int | None]] = field(default_factory=dict)  # name -> lag, pending


@dataclass(frozen=True)
class CatchupInfo:
    """Catch-up (tasks/catchup.py): how far behind each cursor is, what it recovered."""

    cursor_ages: dict[str, float]  # account ("" for the key's own) -> seconds behind now
    recovered: int  # events found in Stripe's list that the receiver never got
    ran_seconds_ago: float | None
    holder: str | None  # the worker holding the lease now

    @classmethod
    def of(cls, fields: dict[Any, Any], holder: Any, now: float) -> CatchupInfo | None:
        found = {_text(k): _text(v) for k, v in fields.items()}
        if not found:
            return None
        ages = {
            name.partition(":")[2]: round(max(0.0, now - float(value)), 1)
            for name, value in found.items()
            if name == "cursor" or name.startswith("cursor:")
        }
        ran = found.get("ran_at")
        return cls(
            ages,
            int(found.get("recovered", 0)),
            round(max(0.0, now - float(ran)), 1) if ran else None,
            _text(holder) if holder else None,
        )


@dataclass(frozen=True)
class Status:
    """The figures of `stripe-worker status --json` (the README lists them)."""

    at: float
    workers: list[WorkerInfo]
    queue_depth: int
    held: int
    in_flight: int
    retries_waiting: int
    pending: int
    oldest_pending_seconds: float | None
    streams: dict[str, StreamInfo]
    errors_replayed: int
    poison: int  # messages no worker could decode, kept whole in PREFIX:q:poison
    pace: dict[str, float]  # key mode -> calls/s the shared global Stripe pace allows now
    # key mode -> endpoint -> calls/s; key mode -> the limiter that last answered 429
    endpoint_pace: dict[str, dict[str, float]] = field(default_factory=dict)
    limited_by: dict[str, str] = field(default_factory=dict)
    in_flight_cap: dict[str, float] = field(default_factory=dict)  # key mode -> calls at once
    catchup: CatchupInfo | None = None  # None: catch-up has never run on this Redis

    grace: float = 5.0  # HEARTBEAT_LAPSE: how long a consumer may be down before it counts

    @property
    def live_workers(self) -> int:
        """Workers whose heartbeat is current and whose consumer is connected."""
        return sum(w.consuming for w in self.workers)

    @property
    def workers_not_consuming(self) -> int:
        """Workers whose heartbeat is current and says their consumer is down."""
        return sum(not w.consuming for w in self.workers)

    def problems(self, max_age: float = DEFAULT_MAX_AGE) -> list[str]:
        """Why a probe should fail: no worker alive, a worker that cannot consume, or work
        waiting over `max_age`."""
        found = []
        if not self.workers:
            found.append("no worker is alive")
        for w in self.workers:
            if w.cannot_consume(self.grace):
                found.append(
                    f"worker {w.host} pid {w.pid} cannot consume: its broker connection has "
                    f"been down {w.consuming_for_seconds:.0f} s"
                )
        if self.oldest_pending_seconds is not None and self.oldest_pending_seconds > max_age:
            found.append(
                f"the oldest pending work is {self.oldest_pending_seconds:.0f} s old "
                f"(over {max_age:.0f} s)"
            )
        return found

    def to_json(self, max_age: float = DEFAULT_MAX_AGE) -> dict[str, Any]:
        data = asdict(self)
        data["live_workers"] = self.live_workers
        data["workers_not_consuming"] = self.workers_not_consuming
        data["problems"] = self.problems(max_age)
        return data


def snapshot(client: redis.Redis, settings: Settings) -> Status:
    """The figures now; redis.RedisError when Redis does not answer."""
    keys = settings.keys
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.llen(keys.queue)
    pipe.hlen(keys.unacked)
    pipe.zcard(keys.ledger)
    pipe.zrange(keys.ledger, 0, 0, withscores=True)
    pipe.zrange(keys.workers, 0, -1, withscores=True)
    for name in STREAMS:
        pipe.xlen(keys.stream(name))
    pipe.zcount(keys.replayed_index, time.time() - settings.customer_memory_ttl, "+inf")
    pipe.hgetall(keys.dropped)
    pipe.llen(keys.poison)
    pipe.llen(keys.given_back)
    pipe.hgetall(keys.catchup)
    pipe.get(keys.catchup_lease)
    (now_pair, depth, held, pending, oldest, roll, *rest) = pipe.execute()
    catchup_holder = rest.pop()
    catchup_fields = rest.pop()
    depth += rest.pop()  # a dead worker's messages wait to be taken too
    poison = rest.pop()
    lengths, (replayed, dropped) = rest[: len(STREAMS)], rest[len(STREAMS) :]
    dropped = {_text(k): int(v) for k, v in dropped.items()}
    now = now_pair[0] + now_pair[1] / 1_000_000
    live = [(_text(w), score) for w, score in roll if score >= now - settings.heartbeat_lapse]

    pipe = client.pipeline(transaction=False)
    for worker_id, _ in live:
        pipe.get(keys.worker(worker_id))
    for name, length in zip(STREAMS, lengths, strict=True):
        if length:
            pipe.xinfo_groups(keys.stream(name))
    answers = pipe.execute(raise_on_error=False)
    facts, group_answers = answers[: len(live)], iter(answers[len(live) :])

    workers = []
    pace: dict[str, float] = {}
    endpoint_pace: dict[str, dict[str, float]] = {}
    limited_by: dict[str, str] = {}
    in_flight_cap: dict[str, float] = {}
    for (worker_id, score), raw in zip(live, facts, strict=True):
        if not raw or isinstance(raw, Exception):  # its heartbeat expired just now
            continue
        f = json.loads(raw)
        pace.update(f.get("pace") or {})  # one pace per key, shared: any worker's will do
        beat_ago = round(max(0.0, now - score), 3)
        since = f.get("consuming_since")
        # Both on the worker's clock, so another host's clock does not enter.
        held_for = None if since is None else round(f.get("beat", since) - since + beat_ago, 1)
        for mode, paces in (f.get("endpoint_pace") or {}).items():
            endpoint_pace.setdefault(mode, {}).update(paces)
        limited_by.update(f.get("limited_by") or {})
        in_flight_cap.update(f.get("in_flight_cap") or {})
        workers.append(
            WorkerInfo(
                worker_id,
                str(f.get("host", "")),
                int(f.get("pid", 0)),
                str(f.get("pool", "")),
                int(f.get("concurrency", 0)),
                int(f.get("tasks_done", 0)),
                int(f.get("running", 0)),
                int(f.get("waiting", 0)),
                beat_ago,
                bool(f.get("consuming", True)),
                held_for,
            )
        )
    streams = {}
    for name, length in zip(STREAMS, lengths, strict=True):
        groups: dict[str, dict[str, int | None]] = {}
        answer = next(group_answers) if length else []
        for g in answer if isinstance(answer, list) else []:
            g = {_text(k): v for k, v in g.items()}
            groups[_text(g["name"])] = {"lag": g.get("lag"), "pending": int(g.get("pending", 0))}
        streams[name] = StreamInfo(int(length), dropped.get(name, 0), groups)
    return Status(
        at=round(now, 3),
        workers=workers,
        queue_depth=int(depth),
        held=int(held),
        in_flight=sum(w.running for w in workers),
        retries_waiting=sum(w.waiting for w in workers),
        pending=int(pending),
        oldest_pending_seconds=round(max(0.0, now - oldest[0][1]), 3) if oldest else None,
        streams=streams,
        errors_replayed=int(replayed),
        poison=int(poison),
        pace=pace,
        grace=settings.heartbeat_lapse,
        endpoint_pace=endpoint_pace,
        limited_by=limited_by,
        in_flight_cap=in_flight_cap,
        catchup=CatchupInfo.of(catchup_fields, catchup_holder, now),
    )


def render(status: Status, max_age: float = DEFAULT_MAX_AGE) -> str:
    """The screen `stripe-worker status` prints."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status.at))
    down = status.workers_not_consuming
    lines = [
        f"stripe-worker status at {stamp}",
        f"workers   {status.live_workers} alive" + (f", {down} not consuming" if down else ""),
    ]
    for w in status.workers:
        lines.append(
            f"  {w.host} pid {w.pid}  {w.pool} x{w.concurrency}  done {w.tasks_done}  "
            f"running {w.running}  retries waiting {w.waiting}  beat {w.beat_seconds_ago:.1f} s ago"
            + ("" if w.consuming else "  NOT CONSUMING (broker connection down)")
        )
    lines.append(
        f"queue     {status.queue_depth} queued, {status.in_flight} in flight, "
        f"{status.retries_waiting} retries waiting ({status.held} held by workers)"
    )
    oldest = status.oldest_pending_seconds
    lines.append(
        f"pending   {status.pending} accepted and not finished"
        + (f", oldest {oldest:.1f} s" if oldest is not None else "")
    )
    parts = []
    for name, s in status.streams.items():
        groups = ", ".join(
            f"{g} lag {v['lag'] if v['lag'] is not None else '?'}" for g, v in s.groups.items()
        )
        extra = f" ({groups})" if groups else ""
        if name == ERRORS:
            extra += f" ({status.errors_replayed} replayed)"
        if s.dropped:
            extra += f" ({s.dropped} dropped unread)"
        parts.append(f"{name} {s.entries}{extra}")
    lines.append("streams   " + "   ".join(parts))
    if status.poison:
        lines.append(f"poison    {status.poison} undecodable message(s) kept whole in q:poison")
    paces = ", ".join(f"{rate:g} calls/s ({mode} key)" for mode, rate in status.pace.items())
    lines.append(
        f"pace      {paces or 'none yet (no paced Stripe call since the workers started)'}"
    )
    for mode in sorted({*status.endpoint_pace, *status.in_flight_cap}):
        endpoints = status.endpoint_pace.get(mode, {})
        each = ", ".join(f"{name} {rate:g}/s" for name, rate in sorted(endpoints.items()))
        cap, last = status.in_flight_cap.get(mode), status.limited_by.get(mode)
        lines.append(
            f"          {mode} endpoints: {each or 'none paced'}"
            + (f"; at most {cap:g} calls in flight" if cap else "")
            + (f"; last 429 from {last}" if last else "")
        )
    lines.append("catch-up  " + _catchup_line(status.catchup))
    problems = status.problems(max_age)
    lines.append("PROBLEM   " + "; ".join(problems) if problems else "OK")
    # host names, stream groups and 429 reasons come from workers, agents and Stripe
    return "\n".join(printable(line) for line in lines)


def _catchup_line(info: CatchupInfo | None) -> str:
    if info is None:
        return "never ran here (it needs a Stripe key and a webhook secret on the workers)"
    ages = ", ".join(
        f"{account or 'cursor'} {age:.0f} s behind" for account, age in info.cursor_ages.items()
    )
    ran = f"last ran {info.ran_seconds_ago:.0f} s ago" if info.ran_seconds_ago is not None else ""
    who = f"by {info.holder}" if info.holder else "no worker holds its lease"
    return "; ".join(
        p for p in (ages, f"{info.recovered} recovered (never delivered)", ran, who) if p
    )
