"""The retry policy, in one place: what a task does with the error an attempt met.

`decide` is pure (no Redis, no Celery, no clock): from the error, the attempts counted so
far and the holds, it answers retry, hold or fail, with the countdown. The task
(tasks/customers.py) carries the decision out at its one `self.retry(` call site.

- **hold**: a 429, or no slot in the shared pace soon. Back-pressure, not a failure: the
  work waits on the queue and the attempt is not counted (`holds` grows instead), so a
  burst against Stripe's limit never spends a signup's attempts.
- **retry**: a temporary error (Stripe 5xx/409, a connection that failed or timed out)
  while attempts remain; or our own Redis refusing (the work is not done, whatever the
  attempts: it is never Stripe's failure).
- **fail**: anything else, and a temporary error on the last attempt: the work ends on
  the error stream, where `dlq replay` can queue it again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import redis

from worker.errors import QueueUnavailable, RateLimited, StripeWorkerError, is_retryable
from worker.settings import Settings

Action = Literal["retry", "hold", "fail"]


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped."""
    delay = min(cap, base * 2.0 ** (attempt - 1))  # 2.0: typeshed types int ** int as Any
    return delay / 2 + (rng or random).uniform(0, delay / 2)


@dataclass(frozen=True)
class RetryPolicy:
    """RETRY_MAX_ATTEMPTS, RETRY_BASE_DELAY and RETRY_MAX_DELAY."""

    max_attempts: int
    base_delay: float
    max_delay: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.retry_max_attempts, settings.retry_base_delay, settings.retry_max_delay)


@dataclass(frozen=True)
class Decision:
    """What to do: `action`, after `countdown` seconds; `error` is what the trail and the
    error entry record; `holds` is what the next message carries."""

    action: Action
    error: StripeWorkerError
    countdown: float = 0.0
    holds: int = 0


def decide(
    error: BaseException,
    attempts: int,
    holds: int,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    """Retry, hold or fail after `attempts` counted attempts and `holds` holds."""
    if isinstance(error, RateLimited):
        wait = error.retry_after or backoff(holds + 1, policy.base_delay, policy.max_delay, rng)
        return Decision("hold", error, wait, holds + 1)
    delay = backoff(max(1, attempts), policy.base_delay, policy.max_delay, rng)
    if isinstance(error, redis.RedisError):  # NotReplicated too: it is one of ours and Redis's
        ours = (
            error
            if isinstance(error, StripeWorkerError)
            else QueueUnavailable(f"our Redis refused the step ({error.__class__.__name__})")
        )
        return Decision("retry", ours, delay, holds)
    if not isinstance(error, StripeWorkerError):
        raise TypeError(f"decide() takes our errors and Redis's, not {type(error).__name__}")
    if is_retryable(error) and attempts < policy.max_attempts:
        return Decision("retry", error, delay, holds)
    return Decision("fail", error, 0.0, holds)
