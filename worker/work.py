"""A piece of work as a queue message: plain JSON that names where it came from.

The receiver, `stripe-worker run --queue`-style callers and `dlq replay` all build
their messages here, so the idempotency key and the work id of one piece of work are
the same on every attempt, duplicate delivery and replay.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from worker.celery_app import TASKS
from worker.components import CREATE_CUSTOMER, ComponentSpec

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_\-:.]{1,200}$")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


def signup_idempotency_key(user_id: str) -> str:
    """`signup-<user id>`; a user id that is long or unusual is hashed instead."""
    if _SAFE_KEY.match(user_id):
        return f"signup-{user_id}"
    return f"signup-{_digest(user_id)}"


def idempotency_key_for(spec: ComponentSpec, source: str, source_id: str) -> str:
    """The spec's own key, else one derived from where the work came from."""
    return spec.idempotency_key or f"sw-{_digest(source, source_id, spec.component)}"


def component_work(spec: ComponentSpec, source: str, source_id: str) -> tuple[str, dict]:
    """(task name, work) for a component. A create's work id is its idempotency key, so
    one customer-making piece of work publishes one entry whatever delivered it."""
    work: dict[str, Any] = {"spec": spec.to_json(), "source": source, "source_id": source_id,
                            "replay": 0}
    if spec.component == CREATE_CUSTOMER:
        key = idempotency_key_for(spec, source, source_id)
        work.update(idempotency_key=key, work_id=f"create:{key}")
        return TASKS["create_customer"], work
    work["work_id"] = f"get:{source}:{source_id}"
    return TASKS["get_customer"], work


def event_work(event: dict[str, Any]) -> tuple[str, dict]:
    """(task name, work) for a verified Stripe event."""
    return TASKS["handle_stripe_event"], {
        "event": event, "source": "stripe", "source_id": event["id"],
        "work_id": f"event:{event['id']}", "replay": 0}
