"""`stripe-worker dev`, `send` and `check` as a newcomer runs them: real processes."""

import json
import signal
import subprocess
import sys

import pytest
import redis
import requests

from worker.devtools.dev_state import state_path

from .support import TEST_KEY, free_port, wait_for
from .support.shell import fresh_env, group_alive, start_dev

CLI = [sys.executable, "-m", "worker"]


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


@pytest.mark.slow
def test_dev_on_embedded_defaults_end_to_end(tmp_path):
    env = fresh_env(tmp_path)
    proc, text = start_dev(env, tmp_path, free_port())
    try:
        out = text()
        assert "embedded fakeredis" in out and "emulator at" in out
        assert "SIGNUP_WEBHOOK_SECRET=whsec_" in out
        sent = subprocess.run(
            [
                *CLI,
                "send",
                "signup",
                "--email",
                "jenny.rosen@example.com",
                "--name",
                "Jenny Rosen",
                "--user-id",
                "u_dev",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0 and sent.stdout.startswith("200 "), sent
        event = subprocess.run(
            [*CLI, "send", "stripe", "invoice.payment_failed"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert event.returncode == 0, event
        state = json.loads(state_path(tmp_path).read_text())
        client = redis.Redis.from_url(state["redis_url"], decode_responses=True)
        [(_id, entry)] = wait_for(lambda: client.xrange("stripe:customers"))
        assert entry["customerEmail"] == "jenny.rosen@example.com"
        assert entry["idempotency_key"] == "signup-u_dev"

        # The emulator delivers the events its API calls make (as `stripe listen
        # --forward-to` does): the two customers' customer.created, beside the event sent.
        def events_by_type():
            return {e["event_type"]: e for _id, e in client.xrange("stripe:events")}

        wait_for(lambda: len(events_by_type()) == 2 and len(client.xrange("stripe:events")) == 3)
        enriched = events_by_type()["invoice.payment_failed"]
        assert enriched["customerId"].startswith("cus_")
        made = [
            e
            for _id, e in client.xrange("stripe:events")
            if e["event_type"] != enriched["event_type"]
        ]
        assert {e["customerEmail"] for e in made} >= {"jenny.rosen@example.com"}
        undelivered = requests.get(
            f"{state['stripe_api_base']}/v1/events",
            params={"delivery_success": "false"},
            auth=(state["secrets"]["stripe_secret_key"], ""),
            timeout=10,
        ).json()["data"]
        assert [e["type"] for e in undelivered] == []  # catch-up finds nothing to recover
        tail = subprocess.run(
            [*CLI, "tail", "customers", "--from-start", "--count", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "jenny.rosen@example.com" in tail.stdout
        check = subprocess.run([*CLI, "check"], env=env, capture_output=True, text=True, timeout=60)
        assert "OK    redis" in check.stdout
    finally:
        stop(proc)
    assert proc.returncode == 0, text()[-2000:]
    # Nothing left behind (within the half second this always allowed).
    wait_for(lambda: not group_alive(proc.pid), timeout=0.5, interval=0.02)
    assert not state_path(tmp_path).exists()


@pytest.mark.slow
def test_dev_uses_the_real_redis_when_redis_url_answers(tmp_path, redis_url, prefix, redis_client):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    proc, text = start_dev(env, tmp_path, free_port())
    try:
        assert f"redis     {redis_url} (REDIS_URL)" in text()
        sent = subprocess.run(
            [*CLI, "send", "signup", "--email", "real@example.com"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent
        wait_for(lambda: redis_client.xlen(f"{prefix}:customers") == 1)
    finally:
        stop(proc)
        keys = list(redis_client.scan_iter(f"{prefix}:*"))
        if keys:
            redis_client.delete(*keys)


@pytest.mark.slow
def test_send_without_a_receiver_or_secret_is_a_clear_error(tmp_path):
    env = fresh_env(tmp_path)
    done = subprocess.run(
        [*CLI, "send", "signup", "--email", "a@example.com"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "signup_webhook_secret" in done.stderr
    env["SIGNUP_WEBHOOK_SECRET"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    done = subprocess.run(
        [*CLI, "send", "signup", "--email", "a@example.com", "--url", "http://127.0.0.1:9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "could not reach" in done.stderr


@pytest.mark.parametrize(
    ("extra", "expect_ok"),
    [
        ({}, False),
        (
            {
                "STRIPE_SECRET_KEY": TEST_KEY,
                "STRIPE_WEBHOOK_SECRET": "whsec_abcdefghijkl",
                "SIGNUP_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            },
            True,
        ),
    ],
)
@pytest.mark.slow
def test_check_says_ok_or_fail_per_line(tmp_path, settings, extra, expect_ok):
    # `check` calls Stripe through the pace it keeps in Redis: under the test's prefix.
    env = fresh_env(
        tmp_path,
        REDIS_URL=settings.redis_url,
        STREAM_PREFIX=settings.stream_prefix,
        STRIPE_API_BASE=settings.stripe_api_base,
        **extra,
    )
    done = subprocess.run([*CLI, "check"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode == 0) is expect_ok, done.stdout
    assert "OK    redis" in done.stdout
    if expect_ok:
        assert "OK    stripe" in done.stdout and "test mode" in done.stdout
    else:
        assert "FAIL  key" in done.stdout
    assert TEST_KEY not in done.stdout
