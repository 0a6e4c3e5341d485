"""The Stripe gateway: one SDK client per key, and the shared pace every call keeps."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis
import stripe

from tasks.concurrency_cap import ConcurrencyCap
from tasks.metrics import MeasuredHttpClient, rate_limit_waited, rate_limited_by
from tasks.ratelimit import (
    CONCURRENCY,
    GLOBAL,
    StripeRateLimiter,
    default_ceiling,
    endpoint_ceiling,
)
from tasks.turn import Turn, TurnTaker
from worker.errors import RateLimited, from_stripe_error
from worker.settings import Settings
from worker.vault import Vault, key_mode, livemode_of

T = TypeVar("T")

log = logging.getLogger("stripe_worker.stripe")

# How long one call waits out 429s in place before the work goes back to wait on the
# queue instead (tasks/customers.py); well inside a task's time limit.
HOLD_SECONDS = 30.0
# What a signup calls: the endpoint whose pace bounds how many signups a worker holds at
# the front of what it holds (tasks/holding.py).
SIGNUP_ENDPOINT = "customers.create"
# Without Stripe-Rate-Limited-Reason, a 429 on one endpoint is that endpoint's limiter,
# unless another endpoint met a 429 this recently too: then it is the limit they share.
SHARED_WINDOW = 1.0
# Stripe-Rate-Limited-Reason values that name the global limiter, and the concurrency
# limiter (the cap on calls in flight); the others (endpoint-rate, resource-specific)
# name the endpoint's.
GLOBAL_REASONS = ("global-rate",)
CONCURRENCY_REASONS = ("global-concurrency", "endpoint-concurrency")
# A call's place among the calls in flight outlasts the call by this much (seconds past
# STRIPE_TIMEOUT for each try), so only a dead worker's places lapse.
LEASE_MARGIN = 10.0


class _Kept(threading.local):
    """A thread's work in hand (`StripeGateway.keeping_places`): the place among the calls
    in flight its last call kept, (cap, call id), to give back with the work's end."""

    keeping = False
    place: tuple[ConcurrencyCap, str] | None = None


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
        # (key, connected account or "", endpoint): Stripe keeps its limits per account.
        self._limiters: dict[tuple[str, str, str], StripeRateLimiter | None] = {}
        self._last_429: dict[tuple[str, str, str], float] = {}  # same -> monotonic
        self._caps: dict[str, ConcurrencyCap | None] = {}
        self.last_limiter: dict[str, str] = {}  # key mode -> the limiter that last said 429
        self._lock = threading.Lock()
        self._kept = _Kept()
        self._turns = TurnTaker(redis_client) if redis_client is not None else None

    @classmethod
    def best_effort(
        cls, settings: Settings, vault: Vault, *, max_network_retries: int = 0
    ) -> StripeGateway:
        """For one-off commands (`run`, `check`): paced with the workers when Redis answers,
        unpaced when it does not (a single call, and the command says what is wrong)."""
        from worker.connections import redis_client

        client = redis_client(settings, socket_timeout=2)
        try:
            client.ping()
        except (redis.RedisError, ValueError):
            return cls(settings, vault, max_network_retries=max_network_retries, redis_client=None)
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
                    http_client=MeasuredHttpClient(
                        timeout=self.settings.stripe_timeout, pool_size=self.settings.pool_size
                    ),
                )
                self._clients[key] = client
            return client

    def limiter(
        self, api_secret: str, endpoint: str = GLOBAL, account: str = ""
    ) -> StripeRateLimiter | None:
        """The global pace of the key `api_secret` names, or that of one of its endpoints;
        with `account`, that connected account's: Stripe's limits are "per Stripe account"
        (docs.stripe.com/rate-limits), and a call with Stripe-Account counts against the
        connected account's. None when that limiter is off (0) or there is no Redis."""
        key = self.vault.stripe_key(api_secret)
        s = self.settings
        with self._lock:
            if (key, account, endpoint) not in self._limiters:
                ceiling = (
                    default_ceiling(key_mode(key), s.stripe_rate_limit)
                    if endpoint == GLOBAL
                    else endpoint_ceiling(endpoint, s.stripe_endpoint_rate, s.stripe_endpoint_rates)
                )
                self._limiters[key, account, endpoint] = (
                    StripeRateLimiter(
                        self.redis, s.keys, key, ceiling, endpoint=endpoint, account=account
                    )
                    if ceiling and self.redis is not None
                    else None
                )
            return self._limiters[key, account, endpoint]

    def concurrency(self, api_secret: str) -> ConcurrencyCap | None:
        """The cap on calls in flight of the key `api_secret` names (those it makes as a
        connected account among them); None when it is off
        (STRIPE_CONCURRENCY=0) or there is no Redis."""
        key = self.vault.stripe_key(api_secret)
        s = self.settings
        with self._lock:
            if key not in self._caps:
                lease = s.stripe_timeout * (1 + self.max_network_retries) + LEASE_MARGIN
                self._caps[key] = (
                    ConcurrencyCap(self.redis, s.keys, key, s.stripe_concurrency, lease)
                    if s.stripe_concurrency and self.redis is not None
                    else None
                )
            return self._caps[key]

    @contextlib.contextmanager
    def keeping_places(self) -> Iterator[None]:
        """A piece of work's block (tasks/customers.py): in it, a call of this thread that
        succeeds keeps its place among the key's calls in flight, and `place_to_free`
        hands it to the round trip that ends the work (its publish, tasks/publish.py),
        which lets go of it there: not a round trip of its own after every call. The
        cap then counts the call a little longer than Stripe does (never shorter). What
        is still kept when the block ends is given back then; if Redis cannot take that,
        the place's lease frees it, as a dead worker's."""
        kept = self._kept
        kept.keeping = True
        try:
            yield
        finally:
            kept.keeping = False
            self._give_back_kept()

    def place_to_free(self) -> tuple[str, str] | None:
        """(sorted set, member) of the place this thread's work keeps: for the round trip
        that ends the work to remove, then `place_freed`."""
        place = self._kept.place
        return (place[0].calls, place[1]) if place else None

    def place_freed(self) -> None:
        """The round trip that ends the work removed the place `place_to_free` named."""
        self._kept.place = None

    def _give_back_kept(self) -> None:
        place, self._kept.place = self._kept.place, None
        if place:
            cap, call = place
            try:
                cap.leave(call)
            except redis.RedisError as exc:
                log.warning("a place among the calls in flight is left to its lease: %s", exc)

    def call(
        self,
        api_secret: str,
        request: Callable[[stripe.StripeClient], T],
        endpoint: str | None = None,
        account: str = "",
        turn: Turn | None = None,
    ) -> T:
        """Make one Stripe call at the key's global pace and the pace of `endpoint` (the
        operation, `customers.create`), those of the connected `account` when the call is
        made as one (Stripe-Account); Stripe's errors come back as ours. `turn`: its first
        turn, taken already by `turn` (with the same key, endpoint and account).

        A 429 slows the limiter that answered for everyone on the key, and the call waits
        its turn at the slower pace and goes again, for up to HOLD_SECONDS; then
        RateLimited goes up. A `lock_timeout` 429 (one object busy) only waits.
        """
        client = self.client(api_secret)
        limiters, cap = self._limits(api_secret, endpoint, account)
        # A second call of one piece of work (create_once's look-up, then its create):
        # the first's place goes back before this one waits for its turn.
        if turn is None:
            self._give_back_kept()
        keep = self._kept.keeping
        deadline = time.monotonic() + HOLD_SECONDS
        while True:
            # The slots, then the place in flight (a call waiting for its slot holds
            # none), in one round trip when neither has to wait (tasks/turn.lua).
            if turn is None:
                turn = self._take(limiters, cap)
            slots, call, place = turn.slots, turn.call, turn.place
            if slots or place:
                rate_limit_waited(turn.waited)
            turn = None
            answered = False
            try:
                answer = request(client)
                answered = True
                return answer
            except stripe.StripeError as exc:
                error = from_stripe_error(exc)
            finally:
                if cap and keep and answered:
                    self._kept.place = (cap, call)
                elif cap:
                    cap.leave(call)
            if not isinstance(error, RateLimited) or not (limiters or cap):
                raise error
            pause = error.retry_after or 0.0
            if error.code != "lock_timeout":  # one busy object says nothing of the pace
                name = self._answered(api_secret, endpoint, error.reason, account, capped=bool(cap))
                rate_limited_by(endpoint or "", name)
                if cap and place and name == CONCURRENCY:
                    cap.slow_down(place)
                for limiter, slot in zip(limiters, slots, strict=True):
                    if limiter.name == name:
                        limiter.slow_down(slot, pause)
            # Without a pace to wait a turn in, the work waits on the queue instead.
            if not limiters or time.monotonic() + pause > deadline:
                raise error
            time.sleep(pause)

    def _limits(
        self, api_secret: str, endpoint: str | None, account: str
    ) -> tuple[list[StripeRateLimiter], ConcurrencyCap | None]:
        """The paces a call on `endpoint` keeps (global first), and its key's cap."""
        paces = [self.limiter(api_secret, GLOBAL, account)] + (
            [self.limiter(api_secret, endpoint, account)] if endpoint else []
        )
        limiters = [limiter for limiter in paces if limiter is not None]
        return limiters, self.concurrency(api_secret)

    def _take(
        self, limiters: list[StripeRateLimiter], cap: ConcurrencyCap | None, read: str = ""
    ) -> Turn:
        if self._turns is None or not (limiters or cap or read):
            return Turn([], "", None)
        return self._turns.take(limiters, cap, read)

    def turn(self, api_secret: str, endpoint: str, account: str = "", *, read: str) -> Turn:
        """A call's first turn, taken before the caller knows it will make the call, with
        the key `read` read in the same round trip (`Turn.read`): a create's memory of
        its customer (tasks/create_once.py). When that finds a value the turn comes back
        at once; a turn not used goes back with `forgo` (its slots in the paces are spent:
        at most one each, on the rare work that finds its customer remembered)."""
        if self._turns is None:
            raise RuntimeError("a turn read from Redis needs the gateway's Redis client")
        self._give_back_kept()
        limiters, cap = self._limits(api_secret, endpoint, account)
        return self._take(limiters, cap, read)

    def forgo(self, api_secret: str, turn: Turn) -> None:
        """`turn` will not be used: its place among the calls in flight goes back."""
        cap = self.concurrency(api_secret)
        if cap and turn.place:
            cap.leave(turn.call)

    def _answered(
        self,
        api_secret: str,
        endpoint: str | None,
        reason: str | None,
        account: str = "",
        capped: bool = True,
    ) -> str:
        """The limiter a 429 on `endpoint` came from: Stripe's reason when it gives one
        (its concurrency limiter, when `capped`: else the global pace takes the cut), else
        the endpoint's, unless another endpoint met one within SHARED_WINDOW."""
        key = self.vault.stripe_key(api_secret)
        now = time.monotonic()
        with self._lock:
            shared = any(
                k == key and a == account and e != endpoint and now - at < SHARED_WINDOW
                for (k, a, e), at in self._last_429.items()
            )
            self._last_429[key, account, endpoint or GLOBAL] = now
            if reason in CONCURRENCY_REASONS and capped:
                name = CONCURRENCY
            elif reason and endpoint:
                name = GLOBAL if reason in GLOBAL_REASONS + CONCURRENCY_REASONS else endpoint
            elif reason:
                name = GLOBAL
            else:
                name = GLOBAL if shared or not endpoint else endpoint
            self.last_limiter[key_mode(key)] = name
            return name

    def paces_in_use(self) -> list[tuple[str, str, StripeRateLimiter]]:
        """(key, endpoint or GLOBAL, pace) of each of the platform's own paces this worker
        has made (a connected account's are its own)."""
        with self._lock:
            return [
                (key, name, limiter)
                for (key, account, name), limiter in self._limiters.items()
                if limiter and not account
            ]

    def caps_in_use(self) -> list[tuple[str, ConcurrencyCap]]:
        """(key, cap) of each key's cap on calls in flight this worker has made."""
        with self._lock:
            return [(key, cap) for key, cap in self._caps.items() if cap]

    def limited_by(self) -> dict[str, str]:
        """The limiter that last answered 429, by key mode."""
        with self._lock:
            return dict(self.last_limiter)

    def livemode(self, api_secret: str) -> bool:
        return livemode_of(self.vault.stripe_key(api_secret))
