"""Events Stripe never delivered: `stripe-worker reconcile` and catch-up on its own, on real
parts (Redis, the worker, the emulator's `GET /v1/events` over HTTP), at default settings.

The receiver is "down" by never being told: the events are made by the emulator's own API
calls (customer.created), as Stripe makes them, and no webhook is posted unless a test
posts one, as a delivery that arrives late or early."""

import json
import logging
import subprocess
import threading
import time

import pytest
import stripe

import tasks.catchup as catchup
import tasks.reconcile as walking
from tasks.catchup import GRACE
from tasks.reconcile import EventList
from tasks.stripe_gateway import StripeGateway
from worker.connections import redis_client
from worker.trail import Trail

from .support import (
    TEST_KEY,
    cli,
    entries,
    free_port,
    post_stripe,
    settled,
    wait_for,
    worker_env,
)

ACCOUNT = "acct_1Connected0024"


def make_customers(emulator, n: int, account: str = "") -> list[str]:
    client = stripe.StripeClient(TEST_KEY, base_addresses={"api": emulator.url})
    options = {"stripe_account": account} if account else {}
    return [
        client.v1.customers.create(params={"email": f"c{i}@example.com"}, options=options).id
        for i in range(n)
    ]


def listed_events(emulator, account: str = "") -> list[dict]:
    """The events Stripe (the emulator) has, oldest first, as its API gives them."""
    client = stripe.StripeClient(TEST_KEY, base_addresses={"api": emulator.url})
    options = {"stripe_account": account} if account else {}
    page = client.v1.events.list(params={"limit": 100}, options=options)
    return list(reversed(page.last_response.data["data"]))


def reconcile(settings, webhook_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli("reconcile", *args),
        env=worker_env(settings, webhook_env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def events_by_id(redis_client, settings) -> dict[str, int]:
    found: dict[str, int] = {}
    for entry in entries(redis_client, settings, "events"):
        found[entry["source_id"]] = found.get(entry["source_id"], 0) + 1
    return found


@pytest.mark.slow
def test_reconcile_queues_each_undelivered_event_once_and_a_second_run_nothing(
    client, start_inprocess_worker, redis_client, settings, emulator, webhook_env
):
    made = make_customers(emulator, 3)
    first, second, third = listed_events(emulator)
    # One delivery got through before the outage: reconcile finds it queued.
    assert post_stripe(client, json.dumps(first).encode()).json["duplicate"] is False
    done = reconcile(settings, webhook_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "listed 3, queued 2, skipped 1"
    assert "30d" in done.stderr and "oldest first" in done.stderr
    start_inprocess_worker()
    wait_for(lambda: len(entries(redis_client, settings, "events")) == 3)
    # Stripe's retry of an event reconcile queued arrives late: a duplicate.
    assert post_stripe(client, json.dumps(second).encode()).json["duplicate"] is True
    again = reconcile(settings, webhook_env, "--since", "1h")
    assert again.stdout.strip() == "listed 3, queued 0, skipped 3"
    wait_for(lambda: settled(redis_client, settings))
    assert events_by_id(redis_client, settings) == {e["id"]: 1 for e in (first, second, third)}
    published = {e["customerId"]: e for e in entries(redis_client, settings, "events")}
    assert set(published) == set(made)
    assert {e["component"] for e in published.values()} == {"stripe.getStripeCustomer"}
    assert not any("account" in e for e in published.values())  # the platform's own
    trail = Trail(redis_client, settings)
    assert trail.find(third["id"])[0].lines[0]["step"] == "reconciled"
    assert trail.find(first["id"])[0].lines[0]["step"] == "received"
    after = reconcile(settings, webhook_env, "--from", second["id"])
    assert after.stdout.strip() == "listed 1, queued 0, skipped 1"  # only the third


@pytest.mark.slow(seconds=12)
def test_catch_up_alone_recovers_events_made_while_everything_was_down(
    client, start_inprocess_worker, redis_client, settings, emulator, webhook_env
):
    keys = settings.keys
    worker = start_inprocess_worker()  # default catch-up: on, every 60 s
    wait_for(lambda: redis_client.hget(keys.catchup, "cursor"))  # first start: from now on
    worker.stop()
    assert redis_client.get(keys.catchup_lease) is None  # given up at a graceful stop
    make_customers(emulator, 3)
    events = listed_events(emulator)
    # Younger than GRACE, an event is left to its delivery; the condition, not a sleep.
    wait_for(lambda: time.time() - events[-1]["created"] > GRACE + 1, timeout=GRACE + 5)
    start_inprocess_worker()  # its first tick, once it holds the lease, lists what it missed
    wait_for(lambda: len(entries(redis_client, settings, "events")) == 3)
    late = post_stripe(client, json.dumps(events[0]).encode())  # Stripe's retry, at last
    assert late.json["duplicate"] is True
    wait_for(lambda: settled(redis_client, settings))
    assert events_by_id(redis_client, settings) == {e["id"]: 1 for e in events}
    assert redis_client.hget(keys.catchup, "recovered") == "3"
    status = subprocess.run(
        cli("status", "--json"),
        env=worker_env(settings, webhook_env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    shown = json.loads(status.stdout)["catchup"]
    assert shown["recovered"] == 3 and shown["holder"]
    assert 0 <= shown["cursor_ages"][""] < 120
    screen = subprocess.run(
        cli("status"), env=worker_env(settings, webhook_env), capture_output=True, text=True
    ).stdout
    assert "catch-up  cursor" in screen and "3 recovered (never delivered)" in screen
    assert Trail(redis_client, settings).find(events[1]["id"])[0].lines[0]["step"] == "reconciled"


@pytest.mark.slow(seconds=60)
def test_a_running_worker_catches_up_within_about_a_minute(
    start_worker, redis_client, settings, emulator
):
    """One worker at default settings throughout: its next tick finds what was made after
    the first (CATCHUP_INTERVAL 60 s, plus GRACE)."""
    start_worker()
    wait_for(lambda: redis_client.hget(settings.keys.catchup, "cursor"), timeout=60)
    made_at = time.monotonic()
    made = make_customers(emulator, 2)
    wait_for(lambda: len(entries(redis_client, settings, "events")) == 2, timeout=120)
    assert time.monotonic() - made_at < 60 + GRACE + 30
    assert {e["customerId"] for e in entries(redis_client, settings, "events")} == set(made)


def test_only_one_worker_runs_catch_up_at_a_time(redis_client, settings, vault):
    gateway = StripeGateway(settings, vault, redis_client=redis_client)
    one = catchup.CatchUp(redis_client, settings, gateway, "worker-one")
    two = catchup.CatchUp(redis_client, settings, gateway, "worker-two")
    assert one.hold() and not two.hold() and one.hold()
    assert two.tick() == []  # it lists nothing while the other holds the lease
    one.release()
    assert two.hold()


def test_the_walk_is_in_created_order_with_or_without_an_older_event_to_start_from(
    redis_client, settings, vault, emulator, monkeypatch
):
    gateway = StripeGateway(settings, vault, redis_client=redis_client)
    make_customers(emulator, 7)
    events = listed_events(emulator)
    ids = [e["id"] for e in events]
    listing = EventList(gateway, [])
    assert [e["id"] for e in listing.walk(since=0)] == ids  # nothing older: held, reversed
    assert [e["id"] for e in listing.walk(after=ids[2])] == ids[3:]
    monkeypatch.setattr(walking, "PAGE", 2)
    monkeypatch.setattr(walking, "BUFFER_MAX", 3)  # too many to hold: from the oldest on
    assert [e["id"] for e in listing.walk(since=0)] == ids
    assert [e["id"] for e in listing.walk(since=0, until=events[0]["created"])] == []
    narrowed = EventList(gateway, ["customer.updated"])
    assert list(narrowed.walk(since=0)) == []


@pytest.mark.slow
def test_a_connect_event_is_enriched_from_its_account_and_paced_as_it(
    client, start_inprocess_worker, redis_client, settings, emulator, webhook_env
):
    [customer] = make_customers(emulator, 1, ACCOUNT)
    [event] = listed_events(emulator, ACCOUNT)
    assert event["account"] == ACCOUNT
    assert post_stripe(client, json.dumps(event).encode()).json["duplicate"] is False
    start_inprocess_worker()
    [entry] = wait_for(lambda: entries(redis_client, settings, "events"))
    assert (entry["component"], entry["customerId"]) == ("stripe.getStripeCustomer", customer)
    assert (entry["customerEmail"], entry["account"]) == ("c0@example.com", ACCOUNT)
    assert entries(redis_client, settings, "errors") == []  # not the platform's 404
    paces = list(redis_client.scan_iter(f"{settings.stream_prefix}:ratelimit:*"))
    assert any(k.endswith(f":{ACCOUNT}:customers.retrieve") for k in paces), paces
    assert any(k.endswith(f":{ACCOUNT}") for k in paces), paces
    # One naming a customer its account does not have fails, and says which account.
    missing = dict(event, id="evt_connect_missing", data={"object": {"object": "invoice",
                   "customer": "cus_nowhere"}})  # fmt: skip
    assert post_stripe(client, json.dumps(missing).encode()).status_code == 200
    [error] = wait_for(lambda: entries(redis_client, settings, "errors"))
    assert (error["error_type"], error["account"]) == ("not_found", ACCOUNT)
    # Its account's events are listed with Stripe-Account: nothing new to queue.
    done = reconcile(settings, webhook_env, "--account", ACCOUNT)
    assert done.stdout.strip() == "listed 1, queued 0, skipped 1", done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "soon"], "a duration such as 90s"),
        (["--since", "0m"], "a duration such as 90s"),
        (["--since", "1h", "--from", "evt_1"], "not both"),
        (["--account", "bob"], "acct_"),
    ],
)
def test_reconcile_mistakes_are_one_line_and_exit_2(settings, webhook_env, args, says):
    done = reconcile(settings, webhook_env, *args)
    assert done.returncode == 2 and says in done.stderr, done
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_stripe_unreachable_is_one_line_and_exit_1(settings, webhook_env):
    done = subprocess.run(
        cli("reconcile"),
        env=worker_env(settings.with_(stripe_api_base="http://127.0.0.1:9"), webhook_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: could not reach Stripe") and "Traceback" not in done.stderr


def test_beyond_30_days_is_out_of_reach_and_said(settings, webhook_env, emulator):
    make_customers(emulator, 1)
    done = reconcile(settings, webhook_env, "--since", "45d")
    assert done.returncode == 0, done.stderr
    assert "keeps events 30 days" in done.stderr
    assert done.stdout.strip() == "listed 1, queued 1, skipped 0"


def test_catch_up_is_off_without_a_webhook_secret_or_when_turned_off(settings, env, vault):
    from worker.vault import Vault

    assert catchup.catchup_off(settings, vault) == "no stripe_webhook_secret in the vault"
    both = Vault(None, {**env, "STRIPE_WEBHOOK_SECRET": "whsec_x"})
    assert catchup.catchup_off(settings, both) is None
    assert catchup.catchup_off(settings.with_(catchup="off"), both) == "CATCHUP=off"


def test_the_console_and_the_metrics_show_the_cursor_and_what_was_recovered(
    settings, webhook_env, redis_client, vault, emulator
):
    from prometheus_client import generate_latest

    from tasks.metrics import registry
    from webhooks import create_app
    from worker.vault import Vault

    from .test_console import TOKEN

    catching = catchup.CatchUp(
        redis_client, settings, StripeGateway(settings, vault, redis_client=redis_client), "w1"
    )
    catching.tick()  # the first: the cursor is now
    redis_client.hincrby(settings.keys.catchup, "recovered", 2)
    console = create_app(settings, vault=Vault(None, {**webhook_env, "CONSOLE_TOKEN": TOKEN}))
    overview = console.test_client().get(
        "/console/api/overview", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    shown = overview.get_json()["status"]["catchup"]
    assert shown["recovered"] == 2 and shown["holder"] == "w1"
    assert set(shown["cursor_ages"]) == {""}
    page = generate_latest(registry(redis_client, settings)).decode()
    assert 'stripe_worker_catchup_cursor_age_seconds{account="platform"}' in page
    assert "stripe_worker_catchup_recovered_total" in page
    off = generate_latest(registry(redis_client, settings.with_(catchup="off"))).decode()
    assert "stripe_worker_catchup_cursor_age_seconds{" not in off  # no stale alert when off


def test_catch_up_lists_a_connected_accounts_events_with_a_cursor_of_its_own(
    start_inprocess_worker, redis_client, settings, vault, emulator
):
    import requests

    settings = settings.with_(catchup_accounts=ACCOUNT)
    gateway = StripeGateway(settings, vault, redis_client=redis_client)
    catching = catchup.CatchUp(redis_client, settings, gateway, "w1")
    assert catching.tick() == []  # the first start: both cursors set to now
    assert set(redis_client.hgetall(settings.keys.catchup)) == {"cursor", f"cursor:{ACCOUNT}"}
    [customer] = make_customers(emulator, 1, ACCOUNT)
    found = stripe.StripeClient(TEST_KEY, base_addresses={"api": emulator.url})
    obj = found.v1.customers.retrieve(customer, options={"stripe_account": ACCOUNT})
    # An update 30 s ago, in the connected account, that its Connect webhook never brought.
    now = int(time.time())
    event = requests.post(
        f"{emulator.url}/_emulator/events",
        json={"type": "customer.updated", "object": obj.to_dict(), "account": ACCOUNT,
              "created": now - 30},
        timeout=5,
    ).json()  # fmt: skip
    redis_client.hset(settings.keys.catchup, f"cursor:{ACCOUNT}", now - 60)
    platform, connected = catching.tick()
    assert (platform.queued, connected.queued) == (0, 1)  # the customer.created is too new
    start_inprocess_worker()
    [entry] = wait_for(lambda: entries(redis_client, settings, "events"))
    assert (entry["source_id"], entry["customerId"]) == (event["id"], customer)
    assert json.loads(entry["event"])["account"] == entry["account"] == ACCOUNT


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CATCHUP": "sometimes"}, "CATCHUP must be on or off"),
        ({"CATCHUP_INTERVAL": "0"}, "at least 1 second"),
        ({"CATCHUP_TYPES": ",".join(f"invoice.e{i}" for i in range(21))}, "up to 20"),
        ({"CATCHUP_TYPES": "invoice.*"}, "without wildcards"),
        ({"CATCHUP_ACCOUNTS": "bob"}, "acct_"),
    ],
)
def test_catch_up_settings_are_refused_at_start_when_wrong(env, says):
    from worker.errors import SettingsError
    from worker.settings import Settings

    with pytest.raises(SettingsError, match=says):
        Settings.from_env(env)
    both = Settings.from_env({"CATCHUP_TYPES": "invoice.paid, customer.created"})
    assert both.event_types == ["invoice.paid", "customer.created"]


class OneTick(threading.Event):
    """catch_up_forever's stop, set by its first wait: one tick, on the test's thread."""

    def wait(self, timeout: float | None = None) -> bool:
        self.set()
        return True


def test_a_tick_leaves_a_redis_outage_to_the_heartbeat(settings, vault, caplog):
    """The heartbeat says once that Redis does not answer (Outage); a catch-up tick that
    meets the same outage adds no warning of its own (test_cli_errors's one-voice test
    caught one when the tick fell inside the outage)."""
    gone = settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = redis_client(gone)
    ticking = catchup.CatchUp(client, gone, StripeGateway(gone, vault, redis_client=client), "w1")
    with caplog.at_level(logging.DEBUG, logger=catchup.log.name):
        catchup.catch_up_forever(ticking, OneTick())
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == catchup.log.name]
    assert said == [(logging.DEBUG, "catch-up: Redis does not answer (ConnectionError)")]
