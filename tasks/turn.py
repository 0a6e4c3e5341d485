"""A call's turn: its slot in every pace of its key (tasks/ratelimit.py) and its place among
the calls in flight (tasks/concurrency_cap.py), taken in one round trip a step
(tasks/turn.lua)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis

from tasks.concurrency_cap import ConcurrencyCap
from tasks.ratelimit import HORIZON, INCREASE, Slot, StripeRateLimiter, as_text, no_slot_within
from worker.connections import composed_script


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
        value = as_text(answer[0]) or None
        inside, cap_epoch = bool(int(answer[1])), int(answer[2])
        if not limiters:
            return 0.0, [], "", inside, cap_epoch, value
        epochs = [int(e) for e in answer[5:]]
        return float(answer[3]), epochs, as_text(answer[4]), inside, cap_epoch, value

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
