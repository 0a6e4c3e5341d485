"""The Stripe gateway: one SDK client per key, and the shared pace every call keeps."""

from __future__ import annotations

import threading
from typing import Any

import stripe

from worker.settings import Settings
from worker.vault import Vault, livemode_of


class StripeGateway:
    """Stripe clients for the keys named by components, made once and reused (keep-alive)."""

    def __init__(
        self, settings: Settings, vault: Vault, *, max_network_retries: int = 0, limiter: Any = None
    ):
        self.settings = settings
        self.vault = vault
        self.max_network_retries = max_network_retries
        self.limiter = limiter  # a StripeRateLimiter shared by every worker, or None
        self._clients: dict[str, stripe.StripeClient] = {}
        self._lock = threading.Lock()

    def client(self, api_secret: str) -> stripe.StripeClient:
        key = self.vault.stripe_key(api_secret)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = stripe.StripeClient(
                    key,
                    base_addresses={"api": self.settings.stripe_api_base},
                    max_network_retries=self.max_network_retries,
                    http_client=stripe.RequestsClient(timeout=self.settings.stripe_timeout),
                )
                self._clients[key] = client
            return client

    def livemode(self, api_secret: str) -> bool:
        return livemode_of(self.vault.stripe_key(api_secret))
