"""The retry policy: which errors retry, and how long a retry waits."""

import random

import pytest
import redis

from tasks.entries import customer_id_named_by
from tasks.retry_policy import RetryPolicy, backoff, decide
from worker.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    InternalError,
    NotFound,
    NotReplicated,
    QueueUnavailable,
    RateLimited,
    SpecError,
    StripeUnavailable,
    is_retryable,
)

POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=60.0)


def test_backoff_doubles_with_jitter_and_is_capped():
    rng = random.Random(1)
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (20, 60.0)):
        delays = [backoff(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 10  # jittered, not one value


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (RateLimited("x"), True),
        (QueueUnavailable("x"), True),
        (RateLimited("x", retryable=False), True),  # a 429 is back-pressure, whatever it says
        (AuthenticationFailed("x"), False),
        (SpecError("x"), False),
        (InternalError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_only_our_temporary_errors_retry(error, retry):
    assert is_retryable(error) is retry


@pytest.mark.parametrize(
    ("error", "attempts", "holds", "action", "holds_after", "countdown"),
    [
        # back-pressure: held, the attempt not counted, Stripe's Retry-After when it gives one
        (RateLimited("429", retry_after=7.0), 1, 0, "hold", 1, (7.0, 7.0)),
        (RateLimited("429", retry_after=7.0), 3, 5, "hold", 6, (7.0, 7.0)),  # even at the last
        (RateLimited("no slot soon"), 1, 2, "hold", 3, (2.0, 4.0)),  # backoff of the holds
        # temporary: retried while attempts remain, then failed
        (StripeUnavailable("500"), 1, 0, "retry", 0, (0.5, 1.0)),
        (ConnectionFailed("timeout"), 2, 4, "retry", 4, (1.0, 2.0)),
        (StripeUnavailable("500"), 3, 0, "fail", 0, (0.0, 0.0)),
        # permanent: failed at once
        (AuthenticationFailed("401"), 1, 0, "fail", 0, (0.0, 0.0)),
        (NotFound("404"), 1, 0, "fail", 0, (0.0, 0.0)),
        (SpecError("bad"), 1, 0, "fail", 0, (0.0, 0.0)),
        (InternalError("bug"), 1, 0, "fail", 0, (0.0, 0.0)),
        # our own Redis: the work is not done, whatever the attempts
        (redis.ConnectionError("down"), 1, 0, "retry", 0, (0.5, 1.0)),
        (redis.OutOfMemoryError("full"), 9, 1, "retry", 1, (30.0, 60.0)),
        (NotReplicated("0 of 1"), 5, 0, "retry", 0, (8.0, 16.0)),
    ],
)
def test_the_retry_decision(error, attempts, holds, action, holds_after, countdown):
    decision = decide(error, attempts, holds, POLICY, random.Random(3))
    assert (decision.action, decision.holds) == (action, holds_after)
    assert countdown[0] <= decision.countdown <= countdown[1]
    assert decision.error.error_type  # what the trail and an error entry record
    if isinstance(error, redis.RedisError) and not isinstance(error, NotReplicated):
        assert isinstance(decision.error, QueueUnavailable)
    else:
        assert decision.error is error


def test_the_decision_refuses_what_is_not_an_error_of_ours_or_redis():
    with pytest.raises(TypeError):
        decide(ValueError("x"), 1, 0, POLICY)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"object": "customer", "id": "cus_1"}, "cus_1"),
        ({"object": "invoice", "customer": "cus_2"}, "cus_2"),
        ({"object": "invoice", "customer": {"id": "cus_3", "object": "customer"}}, "cus_3"),
        ({"object": "product", "id": "prod_1"}, None),
        ({"object": "invoice", "customer": None}, None),
    ],
)
def test_the_customer_an_event_names(obj, expected):
    assert customer_id_named_by({"data": {"object": obj}}) == expected
