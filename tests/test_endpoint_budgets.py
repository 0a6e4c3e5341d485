"""Stripe's limiters on real worker processes: each endpoint's budget used at once, and a 429
that slows only the limiter it names, as `status` and the console show.

Against an emulator of each test's own keeping Stripe's limits as its page documents
them (docs.stripe.com/rate-limits: live 100/s global, 25/s per endpoint, a concurrency
limiter; every 429 naming its limiter in Stripe-Rate-Limited-Reason), live key, the
worker at default settings but for what a test is about.
"""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tasks.ratelimit import StripeRateLimiter
from webhooks import create_app
from worker.devtools.emulator import EmulatorServer
from worker.status import render, snapshot
from worker.vault import Vault
from worker.work import Work

from .support import free_port
from .support.deliveries import enqueue, signup_work
from .support.observe import emulator_stats, entries, faults
from .support.signing import LIVE_KEY
from .support.waiting import wait_for

TOKEN = "console-token-for-tests-0123456789"
# The worker's own defaults (64 threads), not the quick few of the test workers.
DEFAULT_POOL = {"WORKER_CONCURRENCY": 0}


@pytest.fixture
def own_emulator():
    server = EmulatorServer("127.0.0.1", 0).start()
    yield server
    server.stop()


def customer_events(emulator: EmulatorServer, n: int) -> list[Work]:
    """`n` Stripe events naming customers that exist: one Get Customer each."""
    works = []
    for i in range(n):
        customer = emulator.state.create_customer("live", {"email": f"old{i}@example.com"})
        event = {
            "id": f"evt_both_{i}",
            "object": "event",
            "type": "invoice.paid",
            "livemode": True,
            "data": {"object": {"object": "invoice", "customer": customer["id"]}},
        }
        works.append(Work.for_event(event))
    return works


@pytest.mark.slow
def test_creates_and_retrieves_use_their_endpoints_budgets_at_once(
    start_worker, redis_client, settings, own_emulator
):
    """200 signups ahead of 40 events, at defaults: the events are done beside the
    creates, at Get Customer's own pace, not once the creates have all been taken from
    the queue (64 threads waiting on Create Customer's 24.25/s would leave them none
    until 136 creates were done), each once, with no error."""
    faults(own_emulator, rate_limit="stripe", latency_ms=200)
    enqueue(redis_client, settings, customer_events(own_emulator, 40))
    enqueue(redis_client, settings, [signup_work(f"both{i}") for i in range(200)])
    worker = start_worker(
        STRIPE_SECRET_KEY=LIVE_KEY, STRIPE_API_BASE=own_emulator.url, **DEFAULT_POOL
    )
    wait_for(lambda: len(entries(redis_client, settings, "events")) == 40, timeout=60)
    made = [e["customerId"] for e in entries(redis_client, settings, "customers")]
    worker.kill()  # the creates left: not the point, and a warm shutdown waits for them
    assert len(made) < 130  # beside: about 40 (both endpoints at 24.25/s)
    assert len(set(made)) == len(made)  # none twice
    assert entries(redis_client, settings, "errors") == []
    stats = emulator_stats(own_emulator)
    assert stats["rate_limited"]["live"] <= 0.02 * stats["requests"]


@pytest.mark.slow
def test_a_429_slows_only_the_limiter_it_names_as_status_and_the_console_show(
    start_worker, redis_client, settings, own_emulator, webhook_env
):
    """Create Customer paced at 60/s, over Stripe's 25/s for that endpoint: its 429s
    (endpoint-rate) cut that pace, and neither the global pace nor Get Customer's,
    which keep flowing; `status`, the console and the worker's metrics say so."""
    faults(own_emulator, rate_limit="stripe", latency_ms=100)
    enqueue(redis_client, settings, customer_events(own_emulator, 40))
    enqueue(redis_client, settings, [signup_work(f"cut{i}") for i in range(200)])
    port = free_port()
    start_worker(
        STRIPE_SECRET_KEY=LIVE_KEY,
        STRIPE_API_BASE=own_emulator.url,
        STRIPE_ENDPOINT_RATES="customers.create=60",
        WORKER_METRICS_PORT=port,
        **DEFAULT_POOL,
    )
    status = wait_for(
        lambda: (s := snapshot(redis_client, settings)).limited_by.get("live") and s,
        timeout=60,
    )
    assert status.limited_by == {"live": "customers.create"}

    def pace(ceiling: float, endpoint: str = "global") -> float:
        return StripeRateLimiter(
            redis_client, settings.keys, LIVE_KEY, ceiling, endpoint=endpoint
        ).rate()

    assert pace(60, "customers.create") < 60  # cut, and climbing back 1.5/s a second
    assert pace(24.25, "customers.retrieve") == pytest.approx(24.25)
    assert pace(97) == pytest.approx(97)
    by = emulator_stats(own_emulator)["rate_limited_by"]
    assert by["endpoint"] >= 1 and by["global"] == by["concurrency"] == 0

    screen = render(status)
    assert "live endpoints: customers.create" in screen
    assert "at most 20 calls in flight; last 429 from customers.create" in screen
    webhook_env["CONSOLE_TOKEN"] = TOKEN
    console = create_app(settings, vault=Vault(None, webhook_env)).test_client()
    shown = console.get(
        "/console/api/overview", headers={"Authorization": f"Bearer {TOKEN}"}
    ).get_json()["status"]
    assert shown["limited_by"] == {"live": "customers.create"}
    assert shown["in_flight_cap"] == {"live": 20}
    limited = ("stripe_worker_stripe_rate_limited_total", ("customers.create",) * 2)
    paced = ("stripe_worker_stripe_endpoint_pace", ("customers.retrieve", "live"))
    # The worker's metrics: its own counters, and the paces from the heartbeats in Redis
    # (Get Customer's from the beat after its first call).
    samples = wait_for(lambda: (m := scrape(port)).get(paced) and m, timeout=30)
    assert samples[limited] >= 1
    assert not any(k[0] == limited[0] and "global" in k[1] for k in samples)
    assert samples[paced] == pytest.approx(24.25)
    assert samples["stripe_worker_stripe_in_flight_cap", ("live",)] == 20
    wait_for(lambda: len(entries(redis_client, settings, "customers")) == 200, timeout=120)
    wait_for(lambda: len(entries(redis_client, settings, "events")) == 40, timeout=60)
    assert entries(redis_client, settings, "errors") == []


def scrape(port: int) -> dict[tuple[str, tuple[str, ...]], float]:
    """The worker's /metrics: (name, its label values sorted) -> value."""
    page = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.values()))): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }
