"""The retry policy: which errors retry, and how long a retry waits."""

import random

import pytest

from tasks.customers import backoff
from tasks.entries import customer_id_named_by
from worker.errors import (
    AuthenticationFailed,
    InternalError,
    QueueUnavailable,
    RateLimited,
    SpecError,
    is_retryable,
)


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
