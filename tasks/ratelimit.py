"""The paces of each Stripe key for every worker's calls, kept in Redis, that find Stripe's limits.

Stripe's rate-limit page (docs.stripe.com/rate-limits) documents a global limit per
account, 100 requests/s in live mode and 25/s in a sandbox, and a limit per endpoint of 25
requests/s unless a page says otherwise, where every named operation is its own endpoint
(`POST /v1/customers` and `GET /v1/customers/{id}` are two); both count every call, and
it answers 429 beyond either. So a key has one global pace and one pace per endpoint, and
each call takes a slot in both at once (tasks/ratelimit.lua, one script): the first time
that is 1/rate seconds or more from every slot already reserved in each (no burst), and
sleeps until it: N workers together keep one pace. A call waiting for its endpoint's
slot leaves the earlier global slots to the other endpoints' calls. Each starts at its
limit less MARGIN (or STRIPE_RATE_LIMIT, STRIPE_ENDPOINT_RATE, STRIPE_ENDPOINT_RATES).

Each pace adapts on its own (AIMD, as TCP does): a 429 multiplies the rate of the
limiter that answered by DECREASE for everyone on the key, once per epoch, and voids
the slots already handed out at the old rate; the rate then climbs back by INCREASE of
the ceiling each second. So a limit lower than the default (another service on the
account, an endpoint Stripe keeps lower) is found without
configuration, and costs one 429 now and then, not a stream of them.

The page also names a concurrency limiter, kept by tasks/concurrency_cap.py; tasks/turn.py
takes a call's turn in both in one round trip.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import redis

from worker.connections import lua_script
from worker.errors import RateLimited
from worker.keys import Keys
from worker.settings import parse_endpoint_rates

# Stripe's default limits per account (docs.stripe.com/rate-limits): global, by key mode,
# and each endpoint's "unless otherwise noted".
STRIPE_LIMITS = {"test": 25.0, "live": 100.0}
ENDPOINT_LIMIT = 25.0
GLOBAL = "global"  # the limiter name of the global pace; an endpoint's is its operation
CONCURRENCY = "concurrency"  # the limiter name of the cap on calls in flight
# Paced a little under them: requests bunch up on the way (network, Stripe's edge), and
# Stripe's own counters are not ours. 3%: 24.25/s test, 97/s live; a 429 slows it anyway.
MARGIN = 0.03
DECREASE = 0.7  # the rate after a 429, as a share of the rate that met it
INCREASE = 1 / 40  # share of the ceiling regained per second (97/s: 2.4/s each second)
FLOOR = 0.5  # calls/s: never paced slower, however many 429s
# A call reserves a slot at most this far ahead; further out it waits without one and asks
# again. A worker that dies (or is restarted) holding reserved slots wastes them for every
# worker on the key: with 64 threads at 24/s they would reach 2.6 s ahead, so a crash loop
# (or a rolling restart) would spend most of the account's pace on slots nobody uses.
HORIZON = 1.0


def default_ceiling(mode: str, configured: float | None) -> float | None:
    """Calls/s for a key of `mode`: STRIPE_RATE_LIMIT when set (0 = no pace), else
    Stripe's limit for the mode less MARGIN."""
    if configured is None:
        return STRIPE_LIMITS[mode] * (1 - MARGIN)
    return configured or None


def endpoint_ceiling(endpoint: str, configured: float | None, overrides: str) -> float | None:
    """Calls/s for `endpoint` (an operation, `customers.create`): its entry in
    STRIPE_ENDPOINT_RATES ("customers.create=50,customers.retrieve=40") when there is one,
    else STRIPE_ENDPOINT_RATE, else Stripe's 25/s less MARGIN; 0 = that endpoint unpaced."""
    rates = parse_endpoint_rates(overrides)
    if endpoint in rates:
        return rates[endpoint] or None
    if configured is None:
        return ENDPOINT_LIMIT * (1 - MARGIN)
    return configured or None


def key_id(api_key: str) -> str:
    """What names a key's pace in Redis: a digest, never the key."""
    return hashlib.sha256(b"stripe-worker pace\x00" + api_key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Slot:
    """A call's place in the pace; `epoch` tells a 429 which pace it was sent at."""

    epoch: int
    waited: float


class StripeRateLimiter:
    """One pace of one Stripe key (global, or one endpoint's), shared through Redis by
    everyone calling with it."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        api_key: str,
        ceiling: float,
        max_wait: float = 20.0,
        endpoint: str = GLOBAL,
        account: str = "",
    ) -> None:
        # A connected account (Stripe-Account) has paces of its own under the key's.
        suffix = (f":{account}" if account else "") + ("" if endpoint == GLOBAL else f":{endpoint}")
        self.key = keys.ratelimit(key_id(api_key) + suffix)
        self.slots = self.key + ":slots"  # the times reserved (tasks/ratelimit.lua)
        self.name = endpoint
        self.ceiling = ceiling
        self.max_wait = max_wait
        self._script = lua_script(client, "tasks", "ratelimit.lua")

    def _run(self, op: str, held: int, *extra: float) -> tuple[float, int]:
        args: list[str | float] = [op, self.ceiling, held, self.ceiling * INCREASE, *extra]
        value, epoch = self._script(keys=[self.key, self.slots], args=args)
        return float(value), int(epoch)

    def acquire(self) -> Slot:
        """Wait for this call's slot. RateLimited when the wait would pass `max_wait`."""
        return acquire_all([self])[0]

    def slow_down(self, slot: Slot, pause: float = 0.0) -> float:
        """Stripe answered 429 to the call made in `slot`: slow the pace (once per epoch)
        and hold it for `pause` seconds (Retry-After). Returns the new rate."""
        rate, _epoch = self._run("slow", slot.epoch, DECREASE, FLOOR, pause)
        return rate

    def rate(self) -> float:
        """The pace's rate now, for stats and tests."""
        rate, _epoch = self._run("peek", -1)
        return rate


def reserve(
    limiters: list[StripeRateLimiter], held: list[int], max_wait: float, slot: str = ""
) -> tuple[float, list[int], str]:
    """One step of the script: the seconds until the slot reserved in every pace (-1:
    none within `max_wait`; 0 also when the `slot` held in the epochs `held` is still
    good), the epochs, and the slot's name (to give it back, once void, when asking again)."""
    args: list[float | str] = ["acquire", max_wait, slot]
    for limiter, epoch in zip(limiters, held, strict=True):
        args += [limiter.ceiling, epoch, limiter.ceiling * INCREASE]
    keys = [name for limiter in limiters for name in (limiter.key, limiter.slots)]
    answer = limiters[0]._script(keys=keys, args=args)
    return float(answer[0]), [int(e) for e in answer[2:]], as_text(answer[1])


def as_text(value: bytes | str) -> str:
    """A script's string answer, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else value


def no_slot_within(max_wait: float) -> RateLimited:
    """The back-pressure when no pace has a slot within `max_wait`: the work waits on the
    queue instead (acquire_all and TurnTaker alike)."""
    return RateLimited(
        f"the shared Stripe pace has no slot within {max_wait:.0f} s; waiting on the queue instead",
        http_status=None,
        retry_after=max_wait / 2,
    )


def acquire_all(limiters: list[StripeRateLimiter]) -> list[Slot]:
    """Wait for one slot in every pace of `limiters` (one key's), taken in one step, so a
    call never counts against one limiter while it waits for another. RateLimited when
    the wait would pass the shortest `max_wait` of them."""
    max_wait = min(limiter.max_wait for limiter in limiters)
    held, slot, waited = [-1] * len(limiters), "", 0.0
    while True:
        left = max_wait - waited
        wait, epochs, slot = reserve(limiters, held, min(HORIZON, left), slot)
        if wait < 0 and left > 0:  # no slot within the horizon: ask again shortly
            pause = min(HORIZON / 2, left)
            time.sleep(pause)
            held, slot, waited = [-1] * len(limiters), "", waited + pause
            continue
        if wait < 0:
            raise no_slot_within(max_wait)
        if wait == 0:
            return [Slot(epoch, waited) for epoch in epochs]
        time.sleep(wait)
        held, waited = epochs, waited + wait
