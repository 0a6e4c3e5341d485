"""Stripe's rate limit as the emulator keeps it: per key mode, answered 429 as Stripe does.

Stripe allows 25 requests/s in test mode and 100/s in live mode (docs.stripe.com/
rate-limits). Kept as a token bucket per mode holding one second of requests, so a burst
up to the limit passes and a steady rate above it is refused.
"""

from __future__ import annotations

import time
from typing import Any

STRIPE_LIMITS = {"test": 25.0, "live": 100.0}

# Stripe's body for a request over the limit; no Stripe-Should-Retry, no Retry-After.
MESSAGE = (
    "Request rate limit exceeded. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)


def parse_limits(value: Any) -> dict[str, float]:
    """`rate_limit` as the faults route takes it: "stripe" (25 test, 100 live), a number
    for both modes, or {"test": n, "live": n}; 0 or null: no limit."""
    if value in (None, 0, "0", False, ""):
        return {}
    if value == "stripe" or value is True:
        return dict(STRIPE_LIMITS)
    if isinstance(value, dict):
        limits = {mode: float(value[mode]) for mode in ("test", "live") if value.get(mode)}
    else:
        limits = {"test": float(value), "live": float(value)}
    if any(v < 0 for v in limits.values()):
        raise ValueError("rate_limit must not be negative")
    return limits


class ModeBuckets:
    """One token bucket per key mode; not thread-safe (the emulator's state lock guards it)."""

    def __init__(self, limits: dict[str, float]) -> None:
        now = time.monotonic()
        self.limits = limits
        self._tokens = dict(limits)  # full: one second's worth
        self._at = dict.fromkeys(limits, now)

    def take(self, mode: str) -> bool:
        """True when a request of `mode` may pass now (and counts it)."""
        limit = self.limits.get(mode)
        if not limit:
            return True
        now = time.monotonic()
        tokens = min(limit, self._tokens[mode] + (now - self._at[mode]) * limit)
        self._at[mode] = now
        if tokens < 1.0:
            self._tokens[mode] = tokens
            return False
        self._tokens[mode] = tokens - 1.0
        return True
