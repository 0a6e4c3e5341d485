"""Where is my webhook? A short trail per piece of work, found by any id or email.

Each step that touches a piece of work appends one line to `PREFIX:trail:<work id>`:
received (or a duplicate), each attempt's outcome with its Stripe request id, published
or failed, replayed. The trail keeps its last TRAIL_MAX lines and expires TRAIL_TTL after
the newest. The terms a person searches by (the webhook or event id, the user id, the
customer id, the email) each name the work in `PREFIX:find:<digest of the term>`, a
sorted set of its newest FIND_MAX work ids with the same expiry: a lookup reads one key,
whatever the size of Redis. Terms are digested, so key names carry no email and no
unbounded input.

The same write counts accepted, published and failed work per second
(`PREFIX:throughput:<minute>`), for the console's chart.

A trail is for people: writing it never fails the work (a lost line is logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from worker import tracing
from worker.connections import lua_script
from worker.errors import StripeWorkerError
from worker.redact import redact
from worker.settings import Settings
from worker.terminal import printable
from worker.work import Work

log = logging.getLogger("stripe_worker.trail")

TRAIL_MAX = 30  # lines per piece of work: 8 attempts and a few replays fit
FIND_MAX = 20  # work ids per search term (a customer's events: the newest)
THROUGHPUT_TTL = 15 * 60
# Steps counted per second for the chart, and under which name.
COUNTED = {
    "received": "accepted",
    "reconciled": "accepted",
    "replayed": "accepted",
    "published": "published",
    "failed": "failed",
}
SERIES = ("accepted", "published", "failed")


def term_digest(term: str) -> str:
    """The name part of a search term's key: emails match whatever their case."""
    term = term.strip()
    if "@" in term:
        term = term.lower()
    return hashlib.sha256(term.encode()).hexdigest()[:32]


def terms_of(work: Work) -> set[str]:
    """What a person may search this work by."""
    found: set[object] = {work.source_id}
    spec = work.spec or {}
    body = _mapping(spec.get("Body"))
    meta = _mapping(body.get("metadata"))
    found |= {body.get("email"), meta.get("user_id"), spec.get("customer_id")}
    obj = ((work.event or {}).get("data") or {}).get("object")
    if isinstance(obj, dict):
        customer = obj.get("customer")
        if isinstance(customer, dict):
            customer = customer.get("id")
        found |= {customer, obj.get("email")}
        if obj.get("object") == "customer":
            found.add(obj.get("id"))
    return {t for t in found if isinstance(t, str) and t.strip()}


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class TrailLine:
    """trail.lua's keys and arguments for one line, written by another script's step
    (tasks/publish_with_trail.lua); `placeholder` stands in the line for the entry id."""

    keys: list[str]
    args: list[Any]
    placeholder: str


ENTRY_PLACEHOLDER = "\x00entry"


@dataclass(frozen=True)
class Found:
    """One piece of work's trail, oldest line first."""

    work_id: str
    lines: list[dict[str, Any]]


class Trail:
    """Writes and reads the trails under one STREAM_PREFIX."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.keys = settings.keys
        self.ttl = settings.trail_ttl
        self._write = lua_script(client, "worker", "trail.lua")

    def _call(
        self, work: Work, step: str, terms: tuple[str | None, ...], facts: dict[str, Any]
    ) -> tuple[list[str], list[Any]]:
        now = time.time()
        line = {"at": round(now, 3), "step": step, "delivery": work.delivery_id}
        trace = tracing.trace_id()  # with traces on: the id to open the trace by
        if trace:
            line["trace"] = trace
        line.update(
            {
                k: redact(v) if isinstance(v, str) else v
                for k, v in facts.items()
                if v not in (None, "")
            }
        )
        index = {t for t in terms if t}
        if step in ("received", "reconciled", "replayed", "published", "failed"):
            index |= terms_of(work)
        keys = [self.keys.trail(work.work_id), self.keys.throughput(int(now) // 60)]
        keys += [self.keys.find(term_digest(t)) for t in index]
        counter = f"{COUNTED[step]}:{int(now)}" if step in COUNTED else ""
        args = [_line(line), self.ttl, TRAIL_MAX, work.work_id, now, FIND_MAX, counter,
                THROUGHPUT_TTL]  # fmt: skip
        return keys, args

    def record(self, work: Work, step: str, *terms: str | None, **facts: Any) -> None:
        """Append `step` to `work`'s trail; `terms` are extra search terms (a customer id
        learnt from Stripe). The work's own terms are indexed at the steps that start or
        end it."""
        if not self.ttl:  # TRAIL_TTL=0: no trails kept
            return
        keys, args = self._call(work, step, terms, facts)
        try:
            self._write(keys=keys, args=args)
        except redis.RedisError as exc:
            log.warning("trail of %s not written: %s", work.work_id, exc.__class__.__name__)

    def queueing_line(
        self, work: Work, step: str, message_id: str
    ) -> tuple[list[str], list[Any]] | None:
        """trail.lua's keys and arguments for the `step` line written in the step that
        queues `message_id` (worker/enqueue_with_trail.lua), then the `duplicate` line that
        step writes instead when the delivery was queued before: the receiver's answer
        waits one call, not two. None when no trails are kept."""
        if not self.ttl:
            return None
        keys, args = self._call(work, step, (), {"message": message_id})
        duplicate = {"at": round(time.time(), 3), "step": "duplicate",
                     "delivery": work.delivery_id}  # fmt: skip
        return keys, [*args, _line(duplicate)]

    def record_error(self, work: Work, step: str, attempt: int, error: StripeWorkerError) -> None:
        """An attempt that ended in `error`."""
        self.record(
            work,
            step,
            attempt=attempt,
            error_type=error.error_type,
            http_status=error.http_status,
            request_id=error.request_id,
            message=error.message,
        )

    def end_line(
        self, work: Work, step: str, stream: str, entry: dict[str, Any]
    ) -> TrailLine | None:
        """The line of the work's entry on `stream` (published, or failed on the errors),
        for the step that publishes `entry` to write (None: no trails kept): the entry's
        id, and `again` when an earlier run had published it, are that step's to fill in
        (tasks/publish_with_trail.lua)."""
        if not self.ttl:
            return None
        customer, facts = _end_facts(stream, entry)
        keys, args = self._call(work, step, (customer,), {**facts, "entry": ENTRY_PLACEHOLDER})
        return TrailLine(keys, args, json.dumps(ENTRY_PLACEHOLDER))

    def find(self, term: str) -> list[Found]:
        """Every trail `term` names (a work id, webhook or event id, user or customer id,
        or email), newest first."""
        term = term.strip()
        work_ids = [
            w.decode() if isinstance(w, bytes) else str(w)
            for w in self.client.zrevrange(self.keys.find(term_digest(term)), 0, -1)
        ]
        if term not in work_ids and self.client.exists(self.keys.trail(term)):
            work_ids.insert(0, term)
        pipe = self.client.pipeline(transaction=False)
        for work_id in work_ids:
            pipe.lrange(self.keys.trail(work_id), 0, -1)
        found = [
            Found(w, [json.loads(line) for line in lines])
            for w, lines in zip(work_ids, pipe.execute(), strict=True)
        ]
        return [f for f in found if f.lines]


def _end_facts(stream: str, entry: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The customer an entry names, and the facts its trail line keeps."""
    headers = entry.get("Headers") or {}
    request_id = entry.get("request_id") or next(
        (str(v) for k, v in headers.items() if k.lower() == "request-id"), None
    )
    customer = entry.get("customerId")
    facts = {
        "attempt": entry.get("attempts"),
        "stream": stream,
        "customer": customer,
        "request_id": request_id,
        "error_type": entry.get("error_type"),
    }
    return customer, facts


# Made once: json.dumps with any option but the defaults builds an encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def _line(line: dict[str, Any]) -> str:
    return _ENCODER.encode(line)


def throughput(client: redis.Redis, settings: Settings, seconds: int = 300) -> dict[str, Any]:
    """Accepted, published and failed work per second over the last `seconds` (the current
    second left out: it is still counting): {"start", "accepted": [...], ...}."""
    now = int(time.time())
    start = now - seconds
    pipe = client.pipeline(transaction=False)
    minutes = range(start // 60, now // 60 + 1)
    for minute in minutes:
        pipe.hgetall(settings.keys.throughput(minute))
    series = {name: [0] * seconds for name in SERIES}
    for counts in pipe.execute():
        for field, count in counts.items():
            name, _, second = (field.decode() if isinstance(field, bytes) else field).partition(":")
            slot = int(second) - start
            if name in series and 0 <= slot < seconds:
                series[name][slot] = int(count)
    return {"start": start, **series}


def describe(line: dict[str, Any]) -> str:
    """One trail line for a terminal: `16:02:11.204  published  customers 1700-0 ...`."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(line["at"]))
    rest = " ".join(f"{k}={v}" for k, v in line.items() if k not in ("at", "step"))
    return printable(f"{stamp}.{int(line['at'] * 1000) % 1000:03d}  {line['step']:10} {rest}")
