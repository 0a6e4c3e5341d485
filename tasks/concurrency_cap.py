"""Stripe's concurrency limiter for each key, kept in Redis across every worker: the calls in
flight under STRIPE_CONCURRENCY (tasks/concurrency.lua), adapting as the paces do
(tasks/ratelimit.py)."""

from __future__ import annotations

import time
import uuid

import redis

from tasks.ratelimit import CONCURRENCY, DECREASE, INCREASE, Slot, key_id
from worker.connections import lua_script
from worker.errors import RateLimited
from worker.keys import Keys


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
