"""Stripe's rate limit: the shared pace's rules (real Redis), the emulator's 429, and a 429
as back-pressure in a real worker. Timings are the benchmarks' (bench/ratelimit_run.py)."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tasks.ratelimit import (
    DECREASE,
    FLOOR,
    INCREASE,
    MARGIN,
    Slot,
    StripeRateLimiter,
    default_ceiling,
    key_id,
    reserve,
)
from tasks.stripe_gateway import StripeGateway
from webhooks.signup import signup_component
from worker.devtools.emulator import EmulatorServer
from worker.errors import RateLimited, SettingsError, from_stripe_error, is_retryable
from worker.queue import Enqueuer
from worker.settings import Settings
from worker.vault import Vault
from worker.work import Work

from .support.deliveries import enqueue, signup_work
from .support.observe import emulator_stats, entries, faults
from .support.signing import LIVE_KEY, TEST_KEY
from .support.waiting import wait_for


def limiter(redis_client, settings, ceiling: float, api_key: str = TEST_KEY, **kw):
    return StripeRateLimiter(redis_client, settings.keys, api_key, ceiling, **kw)


def slot_time(*paces: StripeRateLimiter) -> float:
    """Reserve a slot in every pace (no sleep): its time on Redis's clock (its name)."""
    return float(reserve(list(paces), [-1] * len(paces), 30.0)[2])


# -- the default pace ---------------------------------------------------------------------


def test_the_pace_is_on_by_default_from_the_key_mode():
    assert Settings.from_env({}).stripe_rate_limit is None
    assert default_ceiling("test", None) == pytest.approx(25 * (1 - MARGIN))
    assert default_ceiling("live", None) == pytest.approx(100 * (1 - MARGIN))
    assert 0 < MARGIN < 0.05  # fills at least 95/s of live's 100


def test_zero_turns_the_pace_off_and_a_value_overrides_it():
    assert Settings.from_env({"STRIPE_RATE_LIMIT": "0"}).stripe_rate_limit == 0
    assert default_ceiling("live", 0.0) is None
    assert default_ceiling("test", 40.0) == 40.0
    with pytest.raises(SettingsError):
        Settings.from_env({"STRIPE_RATE_LIMIT": "-1"})


def test_the_pace_is_per_key_and_its_redis_key_holds_no_secret(settings, redis_client):
    test_pace = limiter(redis_client, settings, 24.0).key
    live_pace = limiter(redis_client, settings, 96.0, LIVE_KEY).key
    assert test_pace != live_pace
    for name, api_key in ((test_pace, TEST_KEY), (live_pace, LIVE_KEY)):
        assert name.startswith(f"{settings.stream_prefix}:ratelimit:")
        assert api_key not in name and api_key[8:] not in name
        assert name.endswith(key_id(api_key))


def test_the_gateway_paces_each_key_at_its_mode_unless_told(settings, vault, redis_client):
    on = StripeGateway(settings, vault, redis_client=redis_client)
    assert on.limiter("stripe_secret_key").ceiling == pytest.approx(25 * (1 - MARGIN))
    off = StripeGateway(settings.with_(stripe_rate_limit=0.0), vault, redis_client=redis_client)
    assert off.limiter("stripe_secret_key") is None


# -- the shared pace's rules ----------------------------------------------------------------


def test_callers_together_keep_one_pace(redis_client, settings):
    """Slots are handed out 1/rate apart, whoever asks (another thread, another worker).
    The slots' own times, not the waits: a wait also counts the seconds between calls,
    which a loaded machine stretches (0.57 s once on CI)."""
    workers = [limiter(redis_client, settings, 10.0) for _ in range(3)]
    slots = [slot_time(workers[i % 3]) for i in range(9)]
    assert [b - a for a, b in itertools.pairwise(slots)] == pytest.approx([0.1] * 8, abs=1e-5)


def test_no_slot_within_max_wait_is_back_pressure_not_a_reservation(redis_client, settings):
    pace = limiter(redis_client, settings, 0.1, max_wait=0.5)
    pace.acquire()  # takes the slot now; the next is 10 s away, past both refusals
    with pytest.raises(RateLimited) as info:
        pace.acquire()
    assert info.value.retry_after and is_retryable(info.value)
    with pytest.raises(RateLimited):  # nothing was reserved by the refused call
        pace.acquire()


def test_a_slot_is_reserved_at_most_the_horizon_ahead(redis_client, settings):
    """A dead worker's reserved slots are wasted for everyone: none further than HORIZON."""
    from tasks.ratelimit import HORIZON

    pace = limiter(redis_client, settings, 10.0)
    reserved, started = 0, time.monotonic()
    while reserve([pace], [-1], HORIZON)[0] >= 0 and reserved < 100:
        reserved += 1
    # The horizon at 10 calls/s, plus the slots the seconds spent asking brought in range.
    assert reserved <= 10 * (HORIZON + time.monotonic() - started) + 1
    slot = pace.acquire()  # waits without a reservation, then takes the next free slot
    assert slot.waited > 0


def test_a_429_slows_everyone_once_per_epoch(redis_client, settings):
    pace = limiter(redis_client, settings, 100.0)
    other_worker = limiter(redis_client, settings, 100.0)
    a, b = pace.acquire(), other_worker.acquire()
    assert a.epoch == b.epoch
    started = time.monotonic()
    slowed = pace.slow_down(a)
    assert slowed == pytest.approx(100 * DECREASE)

    def regrown() -> float:  # the most the pace climbed back since the cut (INCREASE/s)
        return slowed + 100 * INCREASE * (time.monotonic() - started) + 1e-6

    # b was paced at the old rate too: its 429 is the same news, not a second cut.
    assert slowed <= other_worker.slow_down(b) <= regrown()
    assert slowed <= other_worker.rate() <= regrown()
    # A 429 at the new pace cuts again.
    c = other_worker.acquire()
    assert c.epoch == a.epoch + 1
    assert slowed * DECREASE <= pace.slow_down(c) <= regrown() * DECREASE


def test_the_pace_climbs_back_and_never_passes_the_ceiling(redis_client, settings):
    pace = limiter(redis_client, settings, 100.0)
    cut = pace.slow_down(pace.acquire())
    wait_for(lambda: pace.rate() > cut + 0.5, timeout=10)
    assert pace.rate() <= 100.0
    # A caller with a lower ceiling (another setting) is never paced above it.
    assert limiter(redis_client, settings, 10.0).rate() == 10.0


def test_the_pace_never_falls_under_its_floor(redis_client, settings):
    pace = limiter(redis_client, settings, 2.0)
    for _ in range(12):
        _wait, (epoch,), _slot = reserve([pace], [-1], 60.0)  # reserve only, no sleep
        cut = time.monotonic()  # before: the pace climbs back from Redis's time of the cut
        pace.slow_down(Slot(epoch, 0.0))
    assert FLOOR <= pace.rate() <= FLOOR + 2.0 * INCREASE * (time.monotonic() - cut) + 1e-6


def test_slots_held_at_the_old_pace_are_taken_anew_after_a_cut(redis_client, settings):
    """acquire_all's steps, one by one (no thread racing a sleep): a caller holding a slot
    reserved at the old pace asks again when it wakes, and is given one at the new pace."""
    pace = limiter(redis_client, settings, 4.0)
    first = pace.acquire()
    wait, held, slot = reserve([pace], [-1], 30.0)  # 0.25 s on, at the old pace
    assert wait > 0 and held == [first.epoch]
    pace.slow_down(first, pause=0.2)
    again, epochs, anew = reserve([pace], held, 30.0, slot)  # the caller wakes and asks
    assert epochs == [first.epoch + 1] and anew != slot and again > 0
    assert redis_client.zrange(pace.slots, 0, -1) == [anew]  # the void slot is given back


# -- 429s from Stripe -----------------------------------------------------------------------


def test_a_429_is_retried_whatever_stripe_should_retry_says():
    import stripe

    for header in ({}, {"Stripe-Should-Retry": "false"}, {"Retry-After": "3"}):
        exc = stripe.RateLimitError("slow down", http_status=429, headers=header)
        error = from_stripe_error(exc)
        assert isinstance(error, RateLimited) and is_retryable(error)
    assert error.retry_after == 3.0


@pytest.fixture
def own_emulator():
    """An emulator of this test's own: any well-formed key, test or live."""
    server = EmulatorServer("127.0.0.1", 0).start()
    yield server
    server.stop()


def _hit(emulator, key: str, path: str) -> int:
    r = requests.get(f"{emulator.url}{path}", auth=(key, ""), timeout=5)
    if r.status_code == 429:  # Stripe's body; no Stripe-Should-Retry (docs.stripe.com/rate-limits)
        body = r.json()["error"]
        assert (body["type"], body["code"]) == ("invalid_request_error", "rate_limit")
        assert "Stripe-Should-Retry" not in r.headers
    return r.status_code


# Six endpoints (named operations) the emulator's limits tell apart; most answer 404 once past
# the limits, which is not the point.
ENDPOINTS = ["/v1/customers", "/v1/customers/cus_x", "/v1/events", "/v1/charges", "/v1/products"]


def _burst_until_limited(emulator, key: str, path_of, most: int = 600) -> tuple[list[int], float]:
    """Calls 10 at a time until one is answered 429 (at most `most`): the answers, and the
    seconds they took. However loaded the machine, the bucket empties: the number that
    passed is then bounded by the seconds measured, not by a guess at the machine's speed."""
    answers: list[int] = []
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        while 429 not in answers and len(answers) < most:
            first = len(answers)
            answers += pool.map(lambda i: _hit(emulator, key, path_of(i)), range(first, first + 10))
    return answers, time.monotonic() - started


def test_the_emulator_keeps_stripes_global_limit_per_key_mode(own_emulator):
    """Spread over endpoints (under 25/s each), test mode meets its global 25/s and live
    mode passes 80 of its 100/s; then live's global limit answers."""
    faults(own_emulator, rate_limit="stripe")
    test, took = _burst_until_limited(own_emulator, TEST_KEY, lambda i: ENDPOINTS[i % 5])
    passed = len(test) - test.count(429)
    assert 429 in test and 25 <= passed <= 25 + 25 * took + 1, (passed, took)
    live = [_hit(own_emulator, LIVE_KEY, ENDPOINTS[i % 5]) for i in range(80)]
    assert 429 not in live  # 16 per endpoint, 80 in all: within both limits
    # Then over ten endpoints (each well under its 25/s): past the global 100.
    more, took = _burst_until_limited(own_emulator, LIVE_KEY, lambda i: f"/v1/thing{i % 10}")
    passed = len(more) - more.count(429)
    assert passed <= 100 + 100 * (took + 1), (passed, took)
    # The bucket empties only where the calls come faster than it refills (100/s): this
    # process sends them and serves them, and on a loaded machine it sent 600 at 110/s,
    # none of which had to be refused. Faster than 130/s, 600 calls empty it.
    if len(more) / took > 130:
        assert 429 in more, (passed, took)
    stats = emulator_stats(own_emulator)
    assert stats["rate_limited"] == {"test": test.count(429), "live": more.count(429)}
    limited = test.count(429) + more.count(429)
    assert stats["rate_limited_by"] == {"global": limited, "endpoint": 0, "concurrency": 0}


def test_the_emulator_keeps_stripes_limit_per_endpoint(own_emulator):
    """Live mode: calls to one endpoint meet its 25/s while another endpoint still passes."""
    faults(own_emulator, rate_limit="stripe")
    # Until refused, bounded by the seconds they took (40 one after another on a loaded
    # machine took long enough for the bucket to refill: none was refused).
    one, took = _burst_until_limited(own_emulator, LIVE_KEY, lambda i: "/v1/customers")
    passed = len(one) - one.count(429)
    assert 429 in one and 25 <= passed <= 25 + 25 * took + 1, (passed, took)
    other = [_hit(own_emulator, LIVE_KEY, "/v1/customers/cus_x") for _ in range(20)]
    assert 429 not in other  # its own budget, and the global 100/s has room
    stats = emulator_stats(own_emulator)
    assert stats["rate_limited_by"] == {"global": 0, "endpoint": one.count(429), "concurrency": 0}


@pytest.mark.slow
def test_the_gateway_absorbs_429s_and_finds_a_lower_limit(settings, vault, redis_client, emulator):
    """Paced at 40/s against a real limit of 8/s: every call succeeds, the pace comes down."""
    faults(emulator, rate_limit={"test": 8})
    gateway = StripeGateway(
        settings.with_(stripe_rate_limit=40.0), vault, redis_client=redis_client
    )
    results = []

    def call() -> None:
        for _ in range(4):
            results.append(
                gateway.call("stripe_secret_key", lambda c: c.v1.customers.list({"limit": 1}))
            )

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 24
    assert emulator_stats(emulator)["rate_limited"]["test"] >= 1
    assert gateway.limiter("stripe_secret_key").rate() < 40 * DECREASE + 5


def test_a_call_takes_a_slot_in_the_global_pace_and_its_endpoints_at_once(redis_client, settings):
    """Global 10/s, two endpoints at 5/s each: together they fill the global pace, each
    call waiting for the later of its two slots (reserved in one step)."""
    g = limiter(redis_client, settings, 10.0)
    a = StripeRateLimiter(redis_client, settings.keys, TEST_KEY, 5.0, endpoint="customers.create")
    b = StripeRateLimiter(redis_client, settings.keys, TEST_KEY, 5.0, endpoint="customers.retrieve")
    slots = [slot_time(g, (a, b)[i % 2]) for i in range(6)]
    assert [s - slots[0] for s in slots] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-5)
    alone = [slot_time(g, a) for _ in range(2)]
    assert alone[1] - alone[0] == pytest.approx(0.2, abs=1e-5)  # one endpoint: its own 5/s


def test_a_call_waiting_for_its_endpoint_leaves_earlier_global_slots_to_others(
    redis_client, settings
):
    """Global 1/s, Create at 0.2/s with three calls queued (0, 5, 10 s on): Get Customers
    take the global slots between them, not ones past the creates' backlog. Slow paces, so
    that a loaded machine's seconds between the calls never reach a slot's time."""
    g = limiter(redis_client, settings, 1.0)
    a = StripeRateLimiter(redis_client, settings.keys, TEST_KEY, 0.2, endpoint="customers.create")
    b = StripeRateLimiter(redis_client, settings.keys, TEST_KEY, 1.0, endpoint="customers.retrieve")
    creates = [slot_time(g, a) for _ in range(3)]
    gets = [slot_time(g, b) for _ in range(5)]
    assert [round(t - creates[0], 3) for t in creates] == [0, 5, 10]
    assert [round(t - creates[0], 3) for t in gets] == [1, 2, 3, 4, 6]  # 5 is a create's


@pytest.mark.slow
def test_a_429_from_one_endpoint_slows_only_that_endpoints_pace(
    settings, env, redis_client, own_emulator
):
    """Live key against the emulator's Stripe limits, our endpoint pace set above Stripe's
    25/s: the endpoint's 429s cut its pace, not the global one nor the other endpoint's."""
    emulator = own_emulator  # its counters and limits are this test's alone
    faults(emulator, rate_limit="stripe")
    vault = Vault(None, {**env, "STRIPE_SECRET_KEY": LIVE_KEY})
    ours = settings.with_(stripe_endpoint_rates="customers.list=80", stripe_api_base=emulator.url)
    gateway = StripeGateway(ours, vault, redis_client=redis_client)

    def call() -> None:
        for _ in range(15):
            gateway.call(
                "stripe_secret_key",
                lambda c: c.v1.customers.list({"limit": 1}),
                endpoint="customers.list",
            )

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert emulator_stats(emulator)["rate_limited_by"]["endpoint"] >= 1
    assert gateway.limiter("stripe_secret_key", "customers.list").rate() < 80 * DECREASE + 5
    assert gateway.limiter("stripe_secret_key").rate() == pytest.approx(97, abs=0.5)
    assert gateway.limiter("stripe_secret_key", "customers.create").rate() == pytest.approx(24.25)
    assert gateway.last_limiter == {"live": "customers.list"}


def test_stripes_reason_names_the_limiter_and_none_is_inferred(settings, vault, redis_client):
    """Stripe-Rate-Limited-Reason when sent; without it, 429s on two endpoints within a
    second are the global limit, on one endpoint that endpoint's."""
    gateway = StripeGateway(settings, vault, redis_client=redis_client)
    key = "stripe_secret_key"
    assert gateway._answered(key, "customers.create", "global-concurrency") == "concurrency"
    assert (
        gateway._answered(key, "customers.create", "global-concurrency", capped=False) == "global"
    )
    assert gateway._answered(key, "customers.create", "global-rate") == "global"
    assert gateway._answered(key, "customers.create", "endpoint-rate") == "customers.create"
    assert gateway._answered(key, "customers.create", None) == "customers.create"
    assert gateway._answered(key, "customers.retrieve", None) == "global"  # both at once
    assert gateway._answered(key, None, None) == "global"


@pytest.mark.slow
def test_429s_never_spend_the_attempts_nor_reach_the_error_stream(
    app, start_worker, redis_client, settings, emulator
):
    """More 429s than RETRY_MAX_ATTEMPTS (5 here), Stripe-Should-Retry: false, no pace in
    the worker: the customer is still made, on its first counted attempt."""
    faults(emulator, status=429, count=8, should_retry="false")
    enqueuer = app.extensions["stripe_worker"]["enqueuer"]
    _user, spec = signup_component(
        {"type": "user.created", "data": {"user_id": "u_429", "email": "u429@example.com"}}
    )
    enqueuer.enqueue_once(Work.for_component(spec, "signup", "msg_429"))
    start_worker(STRIPE_RATE_LIMIT=0)
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"), timeout=60)
    assert entry["attempts"] == "1"
    assert entries(redis_client, settings, "errors") == []
    assert emulator_stats(emulator)["created"]["test"] == 1


# -- fairness -------------------------------------------------------------------------------


def test_a_signup_is_taken_before_a_backlog_of_events(redis_client, settings):
    from worker.envelope import open_envelope

    enqueuer = Enqueuer(redis_client, settings)
    for i in range(50):
        event = {
            "id": f"evt_{i}",
            "type": "invoice.paid",
            "livemode": False,
            "data": {"object": {"object": "invoice", "customer": f"cus_{i}"}},
        }
        enqueuer.enqueue_once(Work.for_event(event))
    _user, spec = signup_component(
        {"type": "user.created", "data": {"user_id": "u_new", "email": "new@example.com"}}
    )
    enqueuer.enqueue_once(Work.for_component(spec, "signup", "msg_new"))
    # Workers take from the right end (kombu's BRPOP, the transport's BLMOVE ... RIGHT).
    _id, task, _body = open_envelope(redis_client.lindex(settings.keys.queue, -1))
    assert task == "stripe_worker.create_customer"
    _id, task, _body = open_envelope(redis_client.lindex(settings.keys.queue, -2))
    assert task == "stripe_worker.handle_stripe_event"  # the events keep their order
    _id, _task, body = open_envelope(redis_client.lindex(settings.keys.queue, -2))
    assert body[1]["work"]["source_id"] == "evt_0"


def test_the_default_pool_is_64_threads_and_gevent_is_gone():
    assert (Settings().worker_pool, Settings().pool_size) == ("threads", 64)
    assert Settings(worker_pool="prefork").pool_size < 64  # one process per core
    with pytest.raises(SettingsError):
        Settings.from_env({"WORKER_POOL": "gevent"})


def test_stripes_own_429_bodies_say_which_429_it_is(emulator):
    """stripe-python leaves `code` unset on RateLimitError; ours reads it from the body, so
    a busy object (lock_timeout) never slows the pace that a real limit (rate_limit) does."""
    import stripe

    client = stripe.StripeClient(
        TEST_KEY, base_addresses={"api": emulator.url}, max_network_retries=0
    )
    codes = []
    for spec in ({"status": 429, "count": 1}, {"rate_limit": 1}):
        faults(emulator, **spec)
        with pytest.raises(stripe.StripeError) as caught:
            for _ in range(5):
                client.v1.customers.create(params={"email": "a@example.com"})
        codes.append(from_stripe_error(caught.value).code)
        faults(emulator, rate_limit=0)
    assert codes == ["lock_timeout", "rate_limit"]


@pytest.mark.slow
def test_a_worker_holds_only_what_its_pace_can_start_soon(start_worker, redis_client, settings):
    """At 2 calls/s a worker of 64 threads holds MIN_HELD messages, not 64: the rest wait
    on the queue for any worker, and a crash strands only those few."""
    from tasks.holding import MIN_HELD

    enqueue(redis_client, settings, [signup_work(f"u_{i}") for i in range(12)])
    start_worker(STRIPE_RATE_LIMIT=2)
    most, deadline = 0, time.monotonic() + 60
    while len(entries(redis_client, settings, "customers")) < 12 and time.monotonic() < deadline:
        most = max(most, redis_client.hlen(settings.keys.unacked))
    assert 2 <= most <= MIN_HELD
    assert len(entries(redis_client, settings, "customers")) == 12
