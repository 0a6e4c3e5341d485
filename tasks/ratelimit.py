"""One pace for every worker's Stripe calls, kept in Redis (GCRA, no burst).

Each call reserves the next free slot, 1/rate seconds after the previous one, and
sleeps until it. So N workers together never go over STRIPE_RATE_LIMIT, and keep it
full when there is work. A slot further away than `max_wait` is not taken: the call
fails as RateLimited, which is retried with backoff like Stripe's own 429.
"""

from __future__ import annotations

import time

import redis

from worker.connections import lua_script
from worker.errors import RateLimited


class StripeRateLimiter:
    """Paces calls to at most `rate` per second for everyone sharing `key`."""

    def __init__(self, client: redis.Redis, key: str, rate: float, max_wait: float = 30.0):
        self.client = client
        self.key = key
        self.interval = 1.0 / rate
        self.max_wait = max_wait
        self._reserve = lua_script(client, "tasks", "ratelimit.lua")

    def acquire(self) -> float:
        """Wait for this call's slot; returns the seconds waited."""
        wait = float(self._reserve(keys=[self.key], args=[self.interval, self.max_wait]))
        if wait < 0:
            raise RateLimited(
                f"over the local Stripe rate limit for more than "
                f"{self.max_wait:.0f} s; retried later"
            )
        if wait > 0:
            time.sleep(wait)
        return wait
