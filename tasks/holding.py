"""What a worker holds to its Stripe paces, and what its heartbeat reports of them.

A worker holds no more work than its keys' paces can start within AHEAD_SECONDS (and at
least MIN_HELD); the rest waits on the queue, for any worker. What one worker holds is what
its crash strands, and what work given back after a crash waits behind: at Stripe's test
limit 25 messages, not 64 threads' worth (2.6 s of the pace). It binds only while the pace
is under the pool's size per second, so not at the live limit. Of what it holds, a worker
keeps at the front as many signups as Create Customer's pace starts in that time, and takes
the rest from past them (tasks/transport.py), so the other endpoints' budgets are used at
the same time.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

from tasks.ratelimit import GLOBAL, StripeRateLimiter
from tasks.stripe_gateway import SIGNUP_ENDPOINT, StripeGateway
from worker.errors import SecretMissing, SpecError
from worker.vault import STRIPE_SECRET_KEY, key_mode

AHEAD_SECONDS = 1.0
MIN_HELD = 4


def messages_to_hold(rates: list[float], pool_size: int) -> int:
    """How many messages a worker with `pool_size` threads holds at these paces (calls/s)."""
    if not rates:
        return pool_size
    return min(pool_size, max(MIN_HELD, math.ceil(sum(rates) * AHEAD_SECONDS)))


def rates(gateway: StripeGateway, now: bool = True) -> list[tuple[str, float]]:
    """(key mode, calls/s) of each key's global pace the worker has used: the rate it
    allows now (from Redis), or else the ceiling the pace starts from."""
    return [
        (key_mode(key), limiter.rate() if now else limiter.ceiling)
        for key, name, limiter in gateway.paces_in_use()
        if name == GLOBAL
    ]


def paces(gateway: StripeGateway) -> dict[str, float]:
    """Calls/s each key's pace allows now, by key mode: what the worker's heartbeat tells
    `stripe-worker status`. Only keys the worker has called with."""
    by_mode: dict[str, float] = {}
    for mode, rate in rates(gateway):
        by_mode[mode] = round(by_mode.get(mode, 0.0) + rate, 2)
    return by_mode


def endpoint_paces(gateway: StripeGateway) -> dict[str, dict[str, float]]:
    """Calls/s each endpoint's pace allows now, by key mode then endpoint."""
    by_mode: dict[str, dict[str, float]] = {}
    for key, name, limiter in gateway.paces_in_use():
        if name != GLOBAL:
            by_mode.setdefault(key_mode(key), {})[name] = round(limiter.rate(), 2)
    return by_mode


def caps(gateway: StripeGateway) -> dict[str, float]:
    """Calls each key may have in flight now (its concurrency cap), by key mode."""
    return {key_mode(key): round(cap.cap(), 1) for key, cap in gateway.caps_in_use()}


def hold_to_pace(
    gateway: StripeGateway, pool_size: int, hold_fewer: Callable[[int, int], None]
) -> Callable[[], dict[str, Any]]:
    """Make the worker hold what its paces can start within AHEAD_SECONDS, from now and
    on every heartbeat (the returned callable, which reports the paces), by `hold_fewer`
    (the worker state's), with at most what Create Customer's pace starts in that time
    being signups."""

    signups: StripeRateLimiter | None = None

    def hold(rates_now: list[float], signup_rate: float | None) -> None:
        front = messages_to_hold([signup_rate], pool_size) if signup_rate else 0
        hold_fewer(pool_size - messages_to_hold(rates_now, pool_size), front)

    with contextlib.suppress(SecretMissing, SpecError):
        gateway.limiter(STRIPE_SECRET_KEY)  # the usual key's paces, before the first call
        gateway.concurrency(STRIPE_SECRET_KEY)
        signups = gateway.limiter(STRIPE_SECRET_KEY, SIGNUP_ENDPOINT)
    hold(
        [rate for _mode, rate in rates(gateway, now=False)],
        signups.ceiling if signups is not None else None,
    )

    def each_beat() -> dict[str, Any]:
        now = paces(gateway)
        hold(list(now.values()), signups.rate() if signups is not None else None)
        return {
            "pace": now,
            "endpoint_pace": endpoint_paces(gateway),
            "in_flight_cap": caps(gateway),
            "limited_by": gateway.limited_by(),
        }

    return each_beat
