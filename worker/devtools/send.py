"""`stripe-worker send`: correctly signed test events, like `stripe trigger`.

Secrets come from the vault (SECRETS_DIR, then the environment), else from a running
`stripe-worker dev`; the receiver URL defaults to that dev's, else 127.0.0.1:8000.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import requests
import stripe
from standardwebhooks.webhooks import Webhook

from worker.errors import UsageError
from worker.settings import Settings
from worker.vault import Vault, livemode_of

STRIPE_TYPES = ("customer.created", "checkout.session.completed", "invoice.payment_failed")


def fixtures() -> dict[str, Any]:
    """Stripe's example objects (from its OpenAPI fixtures) that events are built from."""
    text = resources.files("worker.devtools").joinpath("data/stripe_fixtures.json").read_text()
    shapes: dict[str, Any] = json.loads(text)
    return shapes


@dataclass(frozen=True)
class Sent:
    """What was sent, in a line a user can act on, and the receiver's answer."""

    summary: str
    answer: requests.Response


class Sender:
    """Signs and posts test events with the configured (or dev) secrets."""

    def __init__(
        self, settings: Settings, vault: Vault, dev_state: Mapping[str, Any], url: str | None = None
    ) -> None:
        self.settings = settings
        self.vault = vault
        self.dev = dev_state
        self.url = (url or dev_state.get("receiver") or "http://127.0.0.1:8000").rstrip("/")

    def secret(self, name: str) -> str | None:
        value = self.vault.find(name)
        return value or (self.dev.get("secrets") or {}).get(name)

    def _need(self, name: str) -> str:
        value = self.secret(name)
        if not value:
            raise UsageError(
                f"secret {name!r} is not configured: set {name.upper()}, or start "
                "`stripe-worker dev`, which generates one"
            )
        return value

    def signup(
        self,
        email: str,
        name: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        webhook_id: str | None = None,
    ) -> Sent:
        """POST a Standard Webhooks signed user.created to /webhooks/signup. A new user id
        and webhook id are made up unless given: the same email twice is two users."""
        user_id = user_id or f"u_{secrets.token_hex(6)}"
        data: dict[str, Any] = {"user_id": user_id, "email": email}
        if name:
            data["name"] = name
        if metadata:
            data["metadata"] = dict(metadata)
        body = json.dumps({"type": "user.created", "data": data})
        msg_id = webhook_id or f"msg_{secrets.token_hex(12)}"
        stamp = datetime.now(tz=UTC)
        # The secret may hold several during a rotation: sign with the newest (last).
        secret = self._need("signup_webhook_secret").split(",")[-1].strip()
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, stamp, body),
            "Content-Type": "application/json",
        }
        answer = requests.post(
            f"{self.url}/webhooks/signup", data=body.encode(), headers=headers, timeout=30
        )
        return Sent(f"signup    user {user_id}, webhook {msg_id} -> {self.url}", answer)

    def stripe_event(self, event_type: str, customer_id: str | None = None) -> Sent:
        """POST a Stripe-signed event of `event_type`; like `stripe trigger`, it first makes
        the customer it names (through the Stripe API) unless one is given."""
        if event_type not in STRIPE_TYPES:
            raise UsageError(f"send stripe knows {', '.join(STRIPE_TYPES)}")
        key = self._need("stripe_secret_key")
        base = (
            self.dev.get("stripe_api_base")
            if not self.vault.find("stripe_secret_key")
            else self.settings.stripe_api_base
        )
        if customer_id is None:
            client = stripe.StripeClient(key, base_addresses={"api": base})
            made = client.v1.customers.create(
                params={
                    "email": f"jenny.rosen+{secrets.token_hex(3)}@example.com",
                    "name": "Jenny Rosen",
                    "metadata": {"source": "stripe-worker send"},
                }
            )
            customer: dict[str, Any] = made.to_dict()
        else:
            customer = dict(fixtures()["customer"], id=customer_id)
        event = self.build_event(event_type, customer, livemode_of(key))
        # dev's emulator, when the API is it: its own copy of the event is the one sent
        emulator = base if base and base == self.dev.get("stripe_api_base") else None
        if emulator:
            event = self._as_the_emulator_has_it(emulator, key, event, customer_id is None)
        payload = json.dumps(event)
        secret = self._need("stripe_webhook_secret").split(",")[-1].strip()
        header = stripe.WebhookSignature.generate_signature_header(payload, secret)
        answer = requests.post(
            f"{self.url}/webhooks/stripe",
            data=payload.encode(),
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            timeout=30,
        )
        summary = f"stripe    {event_type} {event['id']} for {customer['id']} -> {self.url}"
        if answer.ok and emulator:
            # Delivered, as Stripe counts it: catch-up's listing then shows it so (if the
            # emulator is gone, catch-up finds a duplicate: nothing lost).
            with contextlib.suppress(requests.RequestException):
                requests.post(
                    f"{emulator}/_emulator/events/delivered",
                    json={"ids": [event["id"]]},
                    timeout=10,
                )
            if _duplicate(answer):
                # dev's emulator delivers the events its API calls make (its forwarder), as
                # Stripe does: the customer.created of the customer made above may be first.
                summary += " (delivered before: dev's emulator forwards the events it makes)"
        return Sent(summary, answer)

    @staticmethod
    def _as_the_emulator_has_it(
        base: str, key: str, event: dict[str, Any], made: bool
    ) -> dict[str, Any]:
        """The dev emulator's own copy of the event, as Stripe would deliver it: the one its
        customer call made (which its forwarder delivers too), else the event added to its
        log (which it leaves to us to deliver). Catch-up then lists the very event this
        webhook carries (a duplicate), not a second one of the same change."""
        obj = event["data"]["object"]
        if made and event["type"] == "customer.created":
            listed = requests.get(
                f"{base}/v1/events",
                params={"type": "customer.created", "limit": "100"},
                auth=(key, ""),
                timeout=10,
            ).json()
            for found in listed.get("data") or []:
                if found["data"]["object"].get("id") == obj.get("id"):
                    return dict(found)
        mode = "live" if event["livemode"] else "test"
        added = requests.post(
            f"{base}/_emulator/events",
            json={"type": event["type"], "object": obj, "mode": mode},
            timeout=10,
        )
        return dict(added.json()) if added.ok else event

    @staticmethod
    def build_event(event_type: str, customer: Mapping[str, Any], livemode: bool) -> dict[str, Any]:
        """A Stripe event shaped like Stripe's fixtures, naming `customer`."""
        shapes = fixtures()
        now = int(time.time())
        if event_type.startswith("customer."):
            obj: dict[str, Any] = dict(customer)
        else:
            obj = dict(shapes[event_type.rsplit(".", 1)[0]])
            obj["customer"] = customer["id"]
            if "customer_email" in obj:
                obj["customer_email"] = customer.get("email")
        obj["livemode"] = livemode
        return dict(
            shapes["event"],
            id=f"evt_{secrets.token_hex(12)}",
            type=event_type,
            created=now,
            livemode=livemode,
            data={"object": obj},
            request={"id": None, "idempotency_key": None},
        )


def _duplicate(answer: requests.Response) -> bool:
    try:
        return bool(answer.json().get("duplicate"))
    except (ValueError, AttributeError):
        return False
