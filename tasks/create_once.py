"""Create Customer once per idempotency key, for as long as the user -> customer memory lasts.

Stripe replays a create under the same idempotency key for 24 h; the memory in Redis
(CUSTOMER_MEMORY_TTL, 90 days) keeps the promise after that: a key that made a customer
gets that customer back, looked up with Get Customer.

A second signup of the same user with another email or name (a new delivery: a new
webhook id) changes nothing in Stripe, where the customer may have been edited since. Its
outputs say `already_exists`, with the details it asked for, and it is published as work
of its own, so it is seen. Sent at the same moment as the first, Stripe refuses the reused
key until the first has finished; the retry then finds the customer the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from tasks.components import run_component
from tasks.runtime import Runtime
from tasks.stripe_gateway import SIGNUP_ENDPOINT
from tasks.turn import Turn
from worker.errors import IdempotencyMismatch, NotFound, StripeUnavailable
from worker.spec import GET_CUSTOMER, ComponentSpec
from worker.work import Work

ALREADY_EXISTS = "already_exists"

log = logging.getLogger("stripe_worker.tasks")


def create_once(
    rt: Runtime, spec: ComponentSpec, key: str, livemode: bool
) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """The create's outputs: a new customer, or the one this key made before (with
    `already_exists` when this spec asked for another email or name); and for a new one
    the memory to write, (key, customer id), which the entry's publishing step writes
    (one round trip: tasks/publish_with_trail.lua). Until then a retry creates again
    with the same idempotency key, and Stripe answers with the same customer."""
    memory = rt.settings.keys.customer(livemode, key)
    # Read in the create's first turn, one round trip with its slots and its place in
    # flight (tasks/turn.lua): the create is what nearly every signup makes.
    first = rt.gateway.turn(spec.api_secret, SIGNUP_ENDPOINT, read=memory)
    turn: Turn | None = first
    known = first.read
    if known:
        rt.gateway.forgo(spec.api_secret, first)
        turn = None
        lookup = ComponentSpec(
            GET_CUSTOMER, spec.api_secret, customer_id=known, outputs=spec.outputs
        )
        try:
            outputs = run_component(lookup, rt.gateway)
        except NotFound:
            rt.redis.delete(memory)  # deleted since: make it anew
        else:
            outputs.pop("customerEmail")
            asked = {k: spec.body[k] for k in ("email", "name") if spec.body.get(k)}
            if any(outputs["Response"].get(k) != v for k, v in asked.items()):
                log.info("%s: customer %s already exists, kept as is", key, known)
                outputs[ALREADY_EXISTS] = asked
            return outputs, None
    try:
        outputs = run_component(spec, rt.gateway, idempotency_key=key, turn=turn)
    except IdempotencyMismatch as exc:
        # Another delivery made this key's customer, with other details, a moment ago and
        # has not remembered it yet: look again after a backoff.
        raise StripeUnavailable(
            f"{exc.message} (retried: another delivery is making this customer)",
            http_status=exc.http_status,
            request_id=exc.request_id,
        ) from None
    return outputs, (memory, outputs["customerId"])


def already_exists_id(work: Work) -> str:
    """The publish-once id of a create that found its customer with other details: one
    entry per set of details, however often it is delivered."""
    body = json.dumps((work.spec or {}).get("Body"), sort_keys=True)
    return f"{work.work_id}:exists:{hashlib.sha256(body.encode()).hexdigest()[:16]}"
