"""One pace for every worker's Stripe calls, kept in Redis (GCRA, no burst).

Each call reserves the next free slot, 1/rate seconds after the previous one, and
sleeps until it. So N workers together never go over STRIPE_RATE_LIMIT, and keep it
full when there is work. A slot further away than `max_wait` is not taken: the call
fails as RateLimited, which is retried with backoff like Stripe's own 429.
"""

from __future__ import annotations

import time

import redis

from worker.errors import RateLimited

# Redis's clock, not the workers': one timeline for every caller.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > tonumber(ARGV[2]) then return '-1' end
redis.call('SET', KEYS[1], tostring(tat + tonumber(ARGV[1])), 'PX',
           math.ceil(wait * 1000) + 60000)
return tostring(wait)
"""


class StripeRateLimiter:
    """Paces calls to at most `rate` per second for everyone sharing `key`."""

    def __init__(self, client: redis.Redis, key: str, rate: float, max_wait: float = 30.0):
        self.client = client
        self.key = key
        self.interval = 1.0 / rate
        self.max_wait = max_wait
        self._reserve = client.register_script(_RESERVE)

    def acquire(self) -> float:
        """Wait for this call's slot; returns the seconds waited."""
        wait = float(self._reserve(keys=[self.key], args=[self.interval, self.max_wait]))
        if wait < 0:
            raise RateLimited(f"over the local Stripe rate limit for more than "
                              f"{self.max_wait:.0f} s; retried later")
        if wait > 0:
            time.sleep(wait)
        return wait
