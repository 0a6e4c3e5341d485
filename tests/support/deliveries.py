"""What the tests send: a signup, Stripe events, posting them to a Flask test client, and
work queued straight onto the Celery queue."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
import requests

from webhooks.signup import signup_component
from worker.queue import Enqueuer
from worker.settings import Settings
from worker.work import Work

from .signing import sign_standard, sign_stripe

SIGNUP = json.dumps(
    {
        "type": "user.created",
        "data": {
            "user_id": "u_123",
            "email": "jenny.rosen@example.com",
            "name": "Jenny Rosen",
            "metadata": {"plan": "pro"},
        },
    }
).encode()


def stripe_event(
    event_id: str = "evt_1",
    livemode: bool = False,
    obj: dict[str, Any] | None = None,
    type_: str = "customer.created",
) -> bytes:
    obj = obj or {"id": "cus_123", "object": "customer", "email": "a@example.com"}
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": type_,
            "livemode": livemode,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    ).encode()


def post_stripe(client: Any, body: bytes, header: str | None = None, **headers: str) -> Any:
    """POST /webhooks/stripe, signed with the test secret unless `header` is given ('' for
    no Stripe-Signature at all)."""
    if header is None:
        header = sign_stripe(body)
    if header:
        headers["Stripe-Signature"] = header
    return client.post(
        "/webhooks/stripe", data=body, headers=headers, content_type="application/json"
    )


def post_signup(
    client: Any,
    body: bytes = SIGNUP,
    headers: dict[str, str] | None = None,
    msg_id: str = "msg_1",
) -> Any:
    """POST /webhooks/signup, signed with the test secret unless `headers` are given."""
    return client.post(
        "/webhooks/signup",
        data=body,
        headers=headers if headers is not None else sign_standard(body, msg_id),
        content_type="application/json",
    )


def signup_over_http(base_url: str, user: str) -> None:
    """POST a signed signup for `user` to a real receiver at `base_url`; it must answer 200."""
    body = json.dumps({"type": "user.created", "data": {"user_id": user, "email": f"{user}@x.io"}})
    answer = requests.post(
        base_url + "/webhooks/signup", data=body, headers=sign_standard(body, f"msg_{user}"),
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text


def event_work(i: int) -> Work:
    """An event that names no customer: the worker publishes it without calling Stripe."""
    event = {
        "id": f"evt_lag_{i}",
        "object": "event",
        "type": "invoice.created",
        "livemode": False,
        "data": {"object": {"object": "invoice", "id": f"in_{i}"}},
    }
    return Work.for_event(event)


def signup_work(user: str) -> Work:
    """The Create Customer of a signup of `user` (webhook msg_<user>), as the receiver
    queues it."""
    _user, spec = signup_component(
        {"type": "user.created", "data": {"user_id": user, "email": f"{user}@example.com"}}
    )
    return Work.for_component(spec, "signup", f"msg_{user}")


def enqueue(client: redis.Redis, settings: Settings, works: list[Work]) -> None:
    """Queue each of `works` as the receiver does (each must be new)."""
    enqueuer = Enqueuer(client, settings)
    for work in works:
        assert enqueuer.enqueue_once(work)
