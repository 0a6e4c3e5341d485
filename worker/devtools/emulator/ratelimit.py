"""Stripe's rate limits as the emulator keeps them, answered 429 as Stripe does.

Stripe's page (docs.stripe.com/rate-limits) documents a global limit per account, 100
requests/s in live mode and 25/s in a sandbox, and a limit per endpoint of 25 requests/s
unless a page says otherwise (each named operation its own endpoint), every call counting
against both. Kept as token buckets holding one second of requests each, one per mode and
one per (mode, endpoint), so a burst up to the limit passes and a steady rate above it is
refused.

The page also names a concurrency limiter, "the number of requests that are active at any
given time", without a figure: "stripe" keeps 20 in flight per key mode, the example of
Stripe's post on its limiters (stripe.com/blog/rate-limiters). Each 429 names its limiter
in `Stripe-Rate-Limited-Reason` (global-rate, endpoint-rate, global-concurrency), as
Stripe's page lists the header's values.
"""

from __future__ import annotations

import time
from typing import Any

STRIPE_LIMITS = {"test": 25.0, "live": 100.0}
ENDPOINT_LIMIT = 25.0
CONCURRENCY_LIMIT = 20
# The limiter that refused -> Stripe-Rate-Limited-Reason.
REASONS = {
    "global": "global-rate",
    "endpoint": "endpoint-rate",
    "concurrency": "global-concurrency",
}

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


def endpoint_of(method: str, path: str) -> str:
    """The named operation a request is: `POST /v1/customers` customers.create,
    `GET /v1/customers/cus_1` customers.retrieve, `GET /v1/events` events.list."""
    parts = [p for p in path.split("/") if p][1:]  # without `v1`
    if not parts:
        return "other"
    if len(parts) == 1:
        verb = {"GET": "list", "POST": "create"}.get(method.upper(), method.lower())
    else:
        verb = {"GET": "retrieve", "POST": "update", "DELETE": "delete"}.get(
            method.upper(), method.lower()
        )
    return f"{parts[0]}.{verb}"


class ModeBuckets:
    """Token buckets, global per key mode and per endpoint when `endpoint_limit` is set;
    not thread-safe (the emulator's state lock guards it)."""

    def __init__(self, limits: dict[str, float], endpoint_limit: float = 0.0) -> None:
        self.limits = limits
        self.endpoint_limit = endpoint_limit
        self._tokens: dict[tuple[str, str, str], float] = {}
        self._at: dict[tuple[str, str, str], float] = {}

    def _level(self, bucket: tuple[str, str, str], limit: float, now: float) -> float:
        tokens = self._tokens.get(bucket, limit)  # full: one second's worth
        tokens = min(limit, tokens + (now - self._at.get(bucket, now)) * limit)
        self._tokens[bucket], self._at[bucket] = tokens, now
        return tokens

    def take(self, mode: str, endpoint: str = "", account: str = "") -> str | None:
        """None when a request of `mode` to `endpoint` may pass now (and counts it in
        every bucket), else the limiter that refuses it: "global" or "endpoint". Each
        connected account (`Stripe-Account`) has buckets of its own: Stripe's limits are
        "per Stripe account" (docs.stripe.com/rate-limits)."""
        now = time.monotonic()
        limits = [((mode, account, ""), self.limits.get(mode), "global")]
        if endpoint and self.endpoint_limit and mode in self.limits:
            limits.append(((mode, account, endpoint), self.endpoint_limit, "endpoint"))
        for bucket, limit, name in limits:
            if limit and self._level(bucket, limit, now) < 1.0:
                return name
        for bucket, limit, _name in limits:
            if limit:
                self._tokens[bucket] -= 1.0
        return None
