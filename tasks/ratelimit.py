"""One pace per Stripe key for every worker's calls, kept in Redis, that finds Stripe's limit.

Stripe allows 25 calls/s per account in test mode and 100/s in live mode, and answers
429 beyond. Each call reserves the next free slot of its key's pace, 1/rate seconds
after the previous one (GCRA, no burst), and sleeps until it: N workers together keep
one pace. The pace starts at the key mode's limit less MARGIN (or STRIPE_RATE_LIMIT).

It adapts (AIMD, as TCP does): a 429 multiplies the rate by DECREASE for everyone on
the key, once per epoch, and voids the slots already handed out at the old rate; the
rate then climbs back by INCREASE of the ceiling each second. So a limit lower than the
default (another service on the account, a per-endpoint limit) is found without
configuration, and costs one 429 now and then, not a stream of them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import redis

from worker.connections import lua_script
from worker.errors import RateLimited
from worker.keys import Keys

# Stripe's default limits per account (docs.stripe.com/rate-limits).
STRIPE_LIMITS = {"test": 25.0, "live": 100.0}
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


def key_id(api_key: str) -> str:
    """What names a key's pace in Redis: a digest, never the key."""
    return hashlib.sha256(b"stripe-worker pace\x00" + api_key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Slot:
    """A call's place in the pace; `epoch` tells a 429 which pace it was sent at."""

    epoch: int
    waited: float


class StripeRateLimiter:
    """The pace of one Stripe key, shared through Redis by everyone calling with it."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        api_key: str,
        ceiling: float,
        max_wait: float = 20.0,
    ) -> None:
        self.key = keys.ratelimit(key_id(api_key))
        self.ceiling = ceiling
        self.max_wait = max_wait
        self._script = lua_script(client, "tasks", "ratelimit.lua")

    def _run(self, op: str, held: int, *extra: float) -> tuple[float, int]:
        args = [op, self.ceiling, held, self.ceiling * INCREASE, *extra]
        value, epoch = self._script(keys=[self.key], args=args)
        return float(value), int(epoch)

    def acquire(self) -> Slot:
        """Wait for this call's slot. RateLimited when the wait would pass `max_wait`."""
        held, waited = -1, 0.0
        while True:
            left = self.max_wait - waited
            wait, epoch = self._run("acquire", held, min(HORIZON, left))
            if wait < 0 and left > 0:  # no slot within the horizon: ask again shortly
                pause = min(HORIZON / 2, left)
                time.sleep(pause)
                held, waited = -1, waited + pause
                continue
            if wait < 0:
                raise RateLimited(
                    f"the shared Stripe pace has no slot within {self.max_wait:.0f} s; "
                    "waiting on the queue instead",
                    http_status=None,
                    retry_after=self.max_wait / 2,
                )
            if wait == 0:
                return Slot(epoch, waited)
            time.sleep(wait)
            held, waited = epoch, waited + wait

    def slow_down(self, slot: Slot, pause: float = 0.0) -> float:
        """Stripe answered 429 to the call made in `slot`: slow the pace (once per epoch)
        and hold it for `pause` seconds (Retry-After). Returns the new rate."""
        rate, _epoch = self._run("slow", slot.epoch, DECREASE, FLOOR, pause)
        return rate

    def rate(self) -> float:
        """The pace's rate now, for stats and tests."""
        rate, _epoch = self._run("peek", -1)
        return rate
