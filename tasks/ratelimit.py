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

The page also names a concurrency limiter: ConcurrencyCap keeps a key's calls in flight
under STRIPE_CONCURRENCY across every worker, adapting the same way.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import redis

from worker.connections import composed_script, lua_script
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
    return float(answer[0]), [int(e) for e in answer[2:]], _text(answer[1])


def _text(value: bytes | str) -> str:
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


class ConcurrencyCap:
    """Stripe's concurrency limiter for one key: at most `ceiling` calls in flight at once,
    counted in Redis across every worker (STRIPE_CONCURRENCY). Stripe's page names the
    limiter, "the number of requests that are active at any given time", without a figure;
    a 429 from it lowers the cap (AIMD, as the paces do).

    A call holds its place under a lease (`lease` s, past any call's time-out), so a worker
    that dies mid-call frees it without anyone's help."""

    name = CONCURRENCY

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        api_key: str,
        ceiling: int,
        lease: float,
        max_wait: float = 20.0,
    ) -> None:
        self.key = keys.ratelimit(key_id(api_key) + ":" + CONCURRENCY)
        self.calls = self.key + ":calls"
        self.ceiling = ceiling
        self.lease = lease
        self.max_wait = max_wait
        self._script = lua_script(client, "tasks", "concurrency.lua")

    def _run(self, op: str, held: int, *extra: float | str) -> tuple[float, int]:
        args = [op, self.ceiling, held, self.ceiling * INCREASE, *extra]
        value, epoch = self._script(keys=[self.key, self.calls], args=args)
        return float(value), int(epoch)

    def enter(self) -> tuple[str, Slot]:
        """Wait for a place among the calls in flight: (the call's id, its Slot).
        RateLimited when the wait would pass `max_wait`."""
        call, waited, pause = uuid.uuid4().hex, 0.0, 0.005
        while True:
            inside, epoch = self._run("enter", -1, call, self.lease)
            if inside:
                return call, Slot(epoch, waited)
            if waited + pause > self.max_wait:
                raise RateLimited(
                    f"{self.ceiling} Stripe calls in flight for {self.max_wait:.0f} s; "
                    "waiting on the queue instead",
                    http_status=None,
                    retry_after=self.max_wait / 2,
                )
            # A place frees within one call's time; asked at most 10 times a second, so
            # 64 threads waiting cost Redis little.
            time.sleep(pause)
            waited, pause = waited + pause, min(0.1, pause * 2)

    def leave(self, call: str) -> None:
        self._run("leave", -1, call)

    def slow_down(self, slot: Slot) -> float:
        """Stripe's concurrency limiter answered the call that entered in `slot`."""
        cap, _epoch = self._run("slow", slot.epoch, DECREASE, 1.0)
        return cap

    def cap(self) -> float:
        """Calls allowed in flight now, for stats and tests."""
        cap, _epoch = self._run("peek", -1)
        return cap


@dataclass(frozen=True)
class Turn:
    """A call's turn: its slot in every pace, its place among the calls in flight (`call`
    its id, '' and None without a cap), and the value read in the same round trip."""

    slots: list[Slot]
    call: str
    place: Slot | None
    read: str | None = None

    @property
    def waited(self) -> float:
        return (self.slots[0].waited if self.slots else 0.0) + (
            self.place.waited if self.place else 0.0
        )


class TurnTaker:
    """Takes a call's turn in the paces and the cap of one key in one round trip a step
    (tasks/turn.lua), where acquire_all and ConcurrencyCap.enter take one each: at the
    defaults a call costs one round trip before it is sent, not two, and a create's read
    of its memory (tasks/create_once.py) comes in the same one."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = composed_script(
            client,
            "tasks",
            "turn.lua",
            ("pace", "tasks", "ratelimit.lua"),
            ("cap", "tasks", "concurrency.lua"),
        )

    def _step(
        self,
        limiters: list[StripeRateLimiter],
        cap: ConcurrencyCap | None,
        call: str,
        read: str,
        held: list[int],
        max_wait: float,
        slot: str,
    ) -> tuple[float, list[int], str, bool, int, str | None]:
        keys: list[str] = [read] if read else []
        args: list[str | float] = ["1" if read else "", "1" if cap else ""]
        if cap:
            keys += [cap.key, cap.calls]
            args += [cap.ceiling, cap.ceiling * INCREASE, call, cap.lease]
        else:
            args += [0, 0, "", 0]
        if limiters:
            keys += [name for limiter in limiters for name in (limiter.key, limiter.slots)]
            args += ["acquire", max_wait, slot]
            for limiter, epoch in zip(limiters, held, strict=True):
                args += [limiter.ceiling, epoch, limiter.ceiling * INCREASE]
        answer = self._script(keys=keys, args=args)
        value = _text(answer[0]) or None
        inside, cap_epoch = bool(int(answer[1])), int(answer[2])
        if not limiters:
            return 0.0, [], "", inside, cap_epoch, value
        epochs = [int(e) for e in answer[5:]]
        return float(answer[3]), epochs, _text(answer[4]), inside, cap_epoch, value

    def take(
        self, limiters: list[StripeRateLimiter], cap: ConcurrencyCap | None, read: str = ""
    ) -> Turn:
        """Wait for a slot in every pace of `limiters` (one key's), as acquire_all does,
        then a place under `cap`, as ConcurrencyCap.enter does (RateLimited past either's
        `max_wait`); the first step reads the key `read` too. A turn whose read finds a
        value comes back at once, without waiting for its slots: the caller may not make
        the call (its place, if it has one, is its to give back)."""
        max_wait = min(limiter.max_wait for limiter in limiters) if limiters else 0.0
        call = uuid.uuid4().hex if cap else ""
        held, slot, waited = [-1] * len(limiters), "", 0.0
        value: str | None = None
        while True:
            left = max_wait - waited
            wait, epochs, slot, inside, cap_epoch, found = self._step(
                limiters, cap, call, read, held, min(HORIZON, left), slot
            )
            if read:
                value, read = found, ""  # read once, in the first step
                if value is not None:
                    place = Slot(cap_epoch, 0.0) if inside else None
                    return Turn([], call if inside else "", place, value)
            if limiters and wait < 0 and left > 0:  # no slot within the horizon: again
                pause = min(HORIZON / 2, left)
                time.sleep(pause)
                held, slot, waited = [-1] * len(limiters), "", waited + pause
                continue
            if limiters and wait < 0:
                raise no_slot_within(max_wait)
            if wait == 0:
                slots = [Slot(epoch, waited) for epoch in epochs]
                if cap is None:
                    return Turn(slots, "", None, value)
                if inside:
                    return Turn(slots, call, Slot(cap_epoch, 0.0), value)
                call, place = cap.enter()  # the cap is full: wait for a place
                return Turn(slots, call, place, value)
            time.sleep(wait)
            held, waited = epochs, waited + wait
