"""A full Redis (maxmemory with noeviction) is an outage: the work waits, nothing is lost.

Redis then refuses every write with OutOfMemoryError. Retrying a task through Celery would
need a write too (its retry is a new message, and Celery drops the message when that
fails), so the tasks' client (`WaitingRedis`, tasks/runtime.py) waits instead: the refused
command runs again once Redis takes writes, the task's message still unacknowledged. The
consumer, refused while recording a message it took, reconnects once Redis takes writes;
that message stays in its fetched list, and recovery gives it back (tasks/recovery.py,
give_back.lua); the ledger sweep (tasks/ledger_sweep.py) is the last resort.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.exceptions import OutOfMemoryError

from worker.settings import Settings

log = logging.getLogger("stripe_worker.full_redis")
T = TypeVar("T")
FIRST_WAIT, LONGEST_WAIT = 0.5, 10.0


def _waits() -> Callable[[], float]:
    delay = FIRST_WAIT / 2

    def next_wait() -> float:
        nonlocal delay
        delay = min(LONGEST_WAIT, delay * 2)
        return delay

    return next_wait


def run_when_writable(call: Callable[[], T], what: str) -> T:
    """`call()`, again and again, while Redis refuses it for want of memory."""
    next_wait = _waits()
    while True:
        try:
            return call()
        except OutOfMemoryError:
            wait = next_wait()
            log.warning("Redis is full (maxmemory): %s waits %.1fs, then runs again", what, wait)
            time.sleep(wait)


class WaitingRedis(redis.Redis):
    """The worker's client: a command Redis refuses for want of memory waits and runs
    again, so the task that sent it waits in place (see the module's docstring)."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        run: Callable[..., Any] = super().execute_command  # unannotated in redis-py
        return run_when_writable(lambda: run(*args, **options), str(args[0]))


def wait_until_writable(client: redis.Redis, settings: Settings) -> None:
    """Return once Redis accepts a write (or stops answering: that is another outage)."""
    next_wait = _waits()
    while True:
        try:
            client.set(settings.keys.probe, int(time.time()), ex=60)
            return
        except OutOfMemoryError:
            wait = next_wait()
            log.warning("Redis is full (maxmemory): the worker takes no message for %.1fs", wait)
            time.sleep(wait)
        except redis.RedisError:
            return
