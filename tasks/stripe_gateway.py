"""The Stripe gateway: one SDK client per key, and the shared pace every call keeps."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import stripe

from tasks.metrics import MeasuredHttpClient, rate_limit_waited
from tasks.ratelimit import StripeRateLimiter, default_ceiling
from worker.errors import RateLimited, SecretMissing, SpecError, from_stripe_error
from worker.settings import Settings
from worker.transport import hold_fewer
from worker.vault import STRIPE_SECRET_KEY, Vault, key_mode, livemode_of

T = TypeVar("T")

# How long one call waits out 429s in place before the work goes back to wait on the
# queue instead (tasks/customers.py); well inside a task's time limit.
HOLD_SECONDS = 30.0
# A worker holds no more work than its keys' pace can start within this many seconds (and
# at least MIN_HELD); the rest waits on the queue, for any worker. What one worker holds is
# what its crash strands, and what work given back after a crash waits behind: at Stripe's
# test limit 25 messages, not 64 threads' worth (2.6 s of the pace). It binds only while
# the pace is under the pool's size per second, so not at the live limit.
AHEAD_SECONDS = 1.0
MIN_HELD = 4


class StripeGateway:
    """Stripe clients for the keys named by components, made once and reused (keep-alive),
    and the pace of each key, shared in Redis with every other worker (None: no pace)."""

    def __init__(
        self,
        settings: Settings,
        vault: Vault,
        *,
        max_network_retries: int = 0,
        redis_client: redis.Redis | None = None,
    ):
        self.settings = settings
        self.vault = vault
        self.max_network_retries = max_network_retries
        self.redis = redis_client
        self._clients: dict[str, stripe.StripeClient] = {}
        self._limiters: dict[str, StripeRateLimiter | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def best_effort(
        cls, settings: Settings, vault: Vault, *, max_network_retries: int = 0
    ) -> StripeGateway:
        """For one-off commands (`run`, `check`): paced with the workers when Redis answers,
        unpaced when it does not (a single call, and the command says what is wrong)."""
        from worker.connections import redis_client

        client: redis.Redis | None = redis_client(settings, socket_timeout=2)
        try:
            client.ping()  # type: ignore[union-attr]
        except (redis.RedisError, ValueError):
            client = None
        return cls(settings, vault, max_network_retries=max_network_retries, redis_client=client)

    def client(self, api_secret: str) -> stripe.StripeClient:
        key = self.vault.stripe_key(api_secret)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = stripe.StripeClient(
                    key,
                    base_addresses={"api": self.settings.stripe_api_base},
                    max_network_retries=self.max_network_retries,
                    http_client=MeasuredHttpClient(timeout=self.settings.stripe_timeout),
                )
                self._clients[key] = client
            return client

    def limiter(self, api_secret: str) -> StripeRateLimiter | None:
        """The pace of the key `api_secret` names; None when STRIPE_RATE_LIMIT=0."""
        key = self.vault.stripe_key(api_secret)
        with self._lock:
            if key not in self._limiters:
                ceiling = default_ceiling(key_mode(key), self.settings.stripe_rate_limit)
                self._limiters[key] = (
                    StripeRateLimiter(self.redis, self.settings.keys, key, ceiling)
                    if ceiling and self.redis is not None
                    else None
                )
            return self._limiters[key]

    def call(self, api_secret: str, request: Callable[[stripe.StripeClient], T]) -> T:
        """Make one Stripe call at the key's pace; Stripe's errors come back as ours.

        A 429 slows the pace for everyone on the key, and the call waits its turn at the
        slower pace and goes again, for up to HOLD_SECONDS; then RateLimited goes up.
        """
        client = self.client(api_secret)
        limiter = self.limiter(api_secret)
        deadline = time.monotonic() + HOLD_SECONDS
        while True:
            slot = limiter.acquire() if limiter is not None else None
            if slot is not None:
                rate_limit_waited(slot.waited)
            try:
                return request(client)
            except stripe.StripeError as exc:
                error = from_stripe_error(exc)
            if not isinstance(error, RateLimited) or limiter is None or slot is None:
                raise error
            pause = error.retry_after or 0.0
            if error.code != "lock_timeout":  # one busy object says nothing of the pace
                limiter.slow_down(slot, pause)
            if time.monotonic() + pause > deadline:
                raise error
            time.sleep(pause)

    def rates(self, now: bool = True) -> list[tuple[str, float]]:
        """(key mode, calls/s) of each paced key this worker has used: the rate its pace
        allows now (from Redis), or else the ceiling the pace starts from."""
        with self._lock:
            limiters = [(key, limiter) for key, limiter in self._limiters.items() if limiter]
        return [
            (key_mode(key), limiter.rate() if now else limiter.ceiling) for key, limiter in limiters
        ]

    def paces(self) -> dict[str, float]:
        """Calls/s each key's pace allows now, by key mode: what this worker's heartbeat
        tells `stripe-worker status`. Only keys this worker has called with."""
        paces: dict[str, float] = {}
        for mode, rate in self.rates():
            paces[mode] = round(paces.get(mode, 0.0) + rate, 2)
        return paces

    def hold_to_pace(self, pool_size: int) -> Callable[[], dict[str, Any]]:
        """Make the worker hold what its pace can start within AHEAD_SECONDS, from now
        and on every heartbeat (the returned callable, which reports the paces)."""

        def hold(rates: list[float]) -> None:
            hold_fewer(pool_size - messages_to_hold(rates, pool_size))

        with contextlib.suppress(SecretMissing, SpecError):
            self.limiter(STRIPE_SECRET_KEY)  # the usual key's pace, before the first call
        hold([rate for _mode, rate in self.rates(now=False)])

        def each_beat() -> dict[str, Any]:
            paces = self.paces()
            hold(list(paces.values()))
            return {"pace": paces}

        return each_beat

    def livemode(self, api_secret: str) -> bool:
        return livemode_of(self.vault.stripe_key(api_secret))


def messages_to_hold(rates: list[float], pool_size: int) -> int:
    """How many messages a worker with `pool_size` threads holds at these paces (calls/s)."""
    if not rates:
        return pool_size
    return min(pool_size, max(MIN_HELD, math.ceil(sum(rates) * AHEAD_SECONDS)))
