"""The emulator's webhook deliveries: each event its API calls make, POSTed to one endpoint
with a `Stripe-Signature`, as `stripe listen --forward-to` forwards an account's events to
a local app (docs.stripe.com/cli/listen). `stripe-worker dev` forwards to its receiver.

Stripe signs each delivery with the endpoint's secret (docs.stripe.com/webhooks/signatures:
`t=<timestamp>,v1=<HMAC-SHA256 of "timestamp.payload">`, made here by the SDK's own
`WebhookSignature.generate_signature_header`) and counts an event delivered once the
endpoint answers 2xx. It retries a failed delivery for up to three days; the forwarder
tries a few times over a few seconds, then leaves the event undelivered, as an event
Stripe gave up on, for catch-up to find.

Events added through `/_emulator/events` are not forwarded: whoever adds one delivers it
(`stripe-worker send`, a test).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import requests
import stripe

log = logging.getLogger("stripe_worker.emulator")

ATTEMPTS = 3
FIRST_DELAY = 1.0  # seconds before the second attempt; doubled before each next one


class Forwarder:
    """Delivers events to `url`, one at a time in the order they were made, from a thread
    of its own; `delivered(event id)` is called after each 2xx."""

    def __init__(self, url: str, secret: str, delivered: Callable[[str], None]) -> None:
        self.url = url
        self._secret = secret
        self._delivered = delivered
        self._events: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-forward", daemon=True)
        self._thread.start()

    def deliver(self, event_id: str, payload: str) -> None:
        """Queue the event's JSON `payload` for delivery; never blocks."""
        self._events.put((event_id, payload))

    def stop(self) -> None:
        self._stopping.set()
        self._events.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with requests.Session() as session:
            while (event := self._events.get()) is not None:
                self._deliver(session, *event)

    def _deliver(self, session: requests.Session, event_id: str, payload: str) -> None:
        delay = FIRST_DELAY
        for attempt in range(1, ATTEMPTS + 1):
            if self._stopping.is_set():
                return
            # Signed at each attempt, as Stripe does: the timestamp is the attempt's.
            header = stripe.WebhookSignature.generate_signature_header(payload, self._secret)
            try:
                answer = session.post(
                    self.url,
                    data=payload.encode(),
                    headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                    timeout=10,
                )
                if answer.ok:
                    self._delivered(event_id)
                    return
                why = f"answered {answer.status_code}"
            except requests.RequestException as exc:
                why = exc.__class__.__name__
            if attempt < ATTEMPTS and self._stopping.wait(delay):
                return
            delay *= 2
        log.warning("event %s not delivered to %s (%s): left to catch-up", event_id, self.url, why)
