"""`Work`: one piece of work as it travels, from the receiver to a stream entry.

It is built once, by `for_component` or `for_event`, and never changed after it is queued:
the same JSON is the task's argument, the ledger's record and, on failure, what the error
entry keeps for a replay; a replay is a new `Work` made by `replayed`.

Three ids, each with one job:
- `delivery_id` dedupes a delivery (`signup:<webhook id>`, `stripe:<event id>`,
  `cli:<id>`, `replay:<error entry id>`); the ledger tracks work by it until it ends.
- `work_id` names the piece of work: the publish-once mark, so any number of deliveries,
  retries and replays of it publish one entry. A create's is its idempotency key.
- the message id (Celery's task id) names one message on the queue: it lives in the
  envelope (worker/envelope.py), not here, and changes when a lost message is re-sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any

from worker.errors import InvalidMessage
from worker.spec import CREATE_CUSTOMER, ComponentSpec

CREATE_CUSTOMER_TASK = "stripe_worker.create_customer"
GET_CUSTOMER_TASK = "stripe_worker.get_customer"
HANDLE_STRIPE_EVENT_TASK = "stripe_worker.handle_stripe_event"
TASK_NAMES = (CREATE_CUSTOMER_TASK, GET_CUSTOMER_TASK, HANDLE_STRIPE_EVENT_TASK)

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_\-:.]{1,200}$")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


def signup_idempotency_key(user_id: str) -> str:
    """`signup-<user id>`; a user id that is long or unusual is hashed instead."""
    if _SAFE_KEY.match(user_id):
        return f"signup-{user_id}"
    return f"signup-{_digest(user_id)}"


@dataclass(frozen=True)
class Work:
    """One piece of work: which task runs it, where it came from, and what to do."""

    task: str
    delivery_id: str
    work_id: str
    source: str  # signup, stripe or cli
    source_id: str  # the webhook, event or CLI id
    spec: dict[str, Any] | None = None  # the component, as users write it
    event: dict[str, Any] | None = None  # the verified Stripe event
    idempotency_key: str = ""  # creates only
    replay: int = 0  # how many replays of a failure led here

    @classmethod
    def for_component(cls, spec: ComponentSpec, source: str, source_id: str) -> Work:
        """A component to run. A create's work id is its idempotency key, so one
        customer-making piece of work publishes one entry whatever delivered it."""
        delivery_id = f"{source}:{source_id}"
        if spec.component == CREATE_CUSTOMER:
            key = spec.idempotency_key or f"sw-{_digest(source, source_id, spec.component)}"
            return cls(
                CREATE_CUSTOMER_TASK,
                delivery_id,
                f"create:{key}",
                source,
                source_id,
                spec=spec.to_json(),
                idempotency_key=key,
            )
        return cls(
            GET_CUSTOMER_TASK,
            delivery_id,
            f"get:{source}:{source_id}",
            source,
            source_id,
            spec=spec.to_json(),
        )

    @classmethod
    def for_event(cls, event: dict[str, Any]) -> Work:
        """A verified Stripe event, published to the events stream (enriched by the task)."""
        return cls(
            HANDLE_STRIPE_EVENT_TASK,
            f"stripe:{event['id']}",
            f"event:{event['id']}",
            "stripe",
            event["id"],
            event=event,
        )

    def replayed(self, error_entry_id: str) -> Work:
        """The same work queued again from its error entry: same work id and key."""
        return replace(self, delivery_id=f"replay:{error_entry_id}", replay=self.replay + 1)

    @property
    def failure_id(self) -> str:
        """The work id of this attempt's error entry: one per replay, never two."""
        return f"{self.work_id}:failed:{self.replay}"

    def to_json(self) -> dict[str, Any]:
        """The fields that are set. Shallow: `spec` and `event` are the Work's own dicts
        (serialize them, never change them); a deep copy cost a tenth of a webhook."""
        return {name: value for name in _FIELD_NAMES if (value := getattr(self, name)) is not None}

    @cached_property
    def json_text(self) -> str:
        """`to_json` as compact JSON text, made once: the task message and the ledger
        record both carry it."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: object) -> Work:
        """The Work in a message or an error entry; InvalidMessage says what is wrong."""
        if not isinstance(data, dict):
            raise InvalidMessage("the work is not a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidMessage(f"the work has unknown fields: {', '.join(unknown)}")
        for name in ("task", "delivery_id", "work_id", "source", "source_id"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise InvalidMessage(f"the work has no {name}")
        if data["task"] not in TASK_NAMES:
            raise InvalidMessage(f"the work names an unknown task {data['task']!r}")
        for name in ("spec", "event"):
            if data.get(name) is not None and not isinstance(data[name], dict):
                raise InvalidMessage(f"the work's {name} is not an object")
        if (data["task"] == HANDLE_STRIPE_EVENT_TASK) == (data.get("event") is None):
            raise InvalidMessage("an event's work carries the event, and only it does")
        if data["task"] != HANDLE_STRIPE_EVENT_TASK and data.get("spec") is None:
            raise InvalidMessage("a component's work carries its spec")
        if (
            not isinstance(data.get("idempotency_key", ""), str)
            or type(data.get("replay", 0)) is not int
        ):
            raise InvalidMessage("the work's idempotency_key or replay has the wrong type")
        return cls(**data)


_FIELD_NAMES = tuple(f.name for f in fields(Work))
