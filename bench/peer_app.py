"""The plain way, written by us as the peer every figure of bench/side_by_side.py is a ratio to.

A Flask app on gunicorn sync workers that verifies with the SDK's `construct_event` and
queues with `.delay()`, and a Celery task with acks_late that calls the SDK with an
idempotency key and XADDs the result: what a user writes without stripe-worker.
Configured from the environment (PEER_PREFIX, REDIS_URL, STRIPE_*), read when the
module is imported, which is fine for a bench peer and not how the product reads settings.
"""

from __future__ import annotations

import json
import os

import redis
import stripe
from celery import Celery
from flask import Flask, request

PREFIX = os.environ.get("PEER_PREFIX", "peer")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

celery = Celery("peer", broker=REDIS_URL)
celery.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=f"{PREFIX}:q",
    broker_connection_retry_on_startup=True,
)
app = Flask(__name__)
_redis = redis.Redis.from_url(REDIS_URL)
_client = stripe.StripeClient(
    os.environ.get("STRIPE_SECRET_KEY", ""),
    base_addresses={"api": os.environ.get("STRIPE_API_BASE", "https://api.stripe.com")},
)


@app.get("/healthz")
def healthz() -> dict:
    return {"ok": True}


@app.post("/webhooks/stripe")
def hook() -> tuple[dict, int]:
    try:
        event = stripe.Webhook.construct_event(
            request.get_data(),
            request.headers.get("Stripe-Signature", ""),
            os.environ["STRIPE_WEBHOOK_SECRET"],
        )
    except (ValueError, stripe.SignatureVerificationError):
        return {"error": "bad signature"}, 400
    handle_event.delay(event.id, event.type)
    return {"received": True}, 200


@celery.task(name="peer.handle_event")
def handle_event(event_id: str, event_type: str) -> None:
    _redis.xadd(f"{PREFIX}:events", {"id": event_id, "type": event_type})


@celery.task(name="peer.create_customer", acks_late=True)
def create_customer(signup_id: str, email: str, user_id: str) -> None:
    customer = _client.v1.customers.create(
        params={"email": email, "metadata": {"user_id": user_id}},
        options={"idempotency_key": f"signup-{signup_id}"},
    )
    _redis.xadd(
        f"{PREFIX}:customers",
        {"signup": signup_id, "customer": customer.id, "data": json.dumps(customer.to_dict())},
    )
