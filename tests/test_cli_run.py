"""`stripe-worker run` as a user runs it: a real process, the emulator over HTTP."""

import json
import os
import subprocess
import sys

import pytest
import requests

from .support import TEST_KEY, clean_env, free_port

CREATE = {
    "component": "stripe.createCustomer",
    "trigger": "true",
    "Body": {"email": "jenny.rosen@example.com", "name": "Jenny Rosen"},
}


def run(spec, settings, key=TEST_KEY, extra_env=None):
    env = told(settings, STRIPE_SECRET_KEY=key, **(extra_env or {}))
    text = spec if isinstance(spec, str) else json.dumps(spec)
    return subprocess.run(
        [sys.executable, "-m", "worker", "run", "--json", "-"],
        input=text,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def told(settings, **values):
    """A shell told the test's Redis and prefix: `run` paces Stripe calls in Redis."""
    return clean_env(
        STRIPE_API_BASE=settings.stripe_api_base,
        REDIS_URL=settings.redis_url,
        STREAM_PREFIX=settings.stream_prefix,
        **values,
    )


@pytest.mark.slow
def test_create_then_get_print_the_promised_outputs(settings):
    created = run(CREATE, settings)
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert set(out) == {"customerId", "Response", "Headers"}
    got = run({"component": "stripe.getStripeCustomer", "customer_id": out["customerId"]}, settings)
    assert got.returncode == 0, got.stderr
    got_out = json.loads(got.stdout)
    assert list(got_out) == ["customerId", "customerEmail", "Response", "Headers"]
    assert got_out["customerEmail"] == "jenny.rosen@example.com"


@pytest.mark.slow
def test_spec_from_a_file(settings, tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(dict(CREATE, outputs={"email": "Response.email"})))
    env = told(settings, STRIPE_SECRET_KEY=TEST_KEY)
    done = subprocess.run(
        [sys.executable, "-m", "worker", "run", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["email"] == "jenny.rosen@example.com"


@pytest.mark.slow
def test_revoked_key_prints_a_clear_401_and_exits_1(emulator, settings):
    requests.post(f"{emulator.url}/_emulator/keys", json={"revoke": [TEST_KEY]}, timeout=5)
    done = run(CREATE, settings)
    assert done.returncode == 1 and done.stdout == ""
    error = json.loads(done.stderr)["error"]
    assert error["type"] == "authentication_error" and error["http_status"] == 401
    assert "revoked" in error["message"]
    assert TEST_KEY[8:] not in done.stderr


@pytest.mark.slow
def test_unknown_customer_exits_1_not_found(settings):
    done = run(
        {"component": "stripe.getStripeCustomer", "customer_id": "cus_ABC123XYZ456"}, settings
    )
    assert done.returncode == 1 and json.loads(done.stderr)["error"]["type"] == "not_found"


@pytest.mark.slow
def test_bad_spec_exits_2_without_calling_stripe(emulator, settings):
    for spec in (
        "{nope",
        {"component": "stripe.getStripeCustomer"},
        dict(CREATE, Body={"email": "not-an-email"}),
    ):
        done = run(spec, settings)
        assert done.returncode == 2, done
        assert json.loads(done.stderr)["error"]["type"] == "invalid_spec"
    assert requests.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["requests"] == 0


def test_missing_key_exits_2_naming_the_secret(emulator):
    env = clean_env(STRIPE_API_BASE=emulator.url)
    done = subprocess.run(
        [sys.executable, "-m", "worker", "run", "--json", "-"],
        input=json.dumps(CREATE),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2 and "STRIPE_SECRET_KEY" in done.stderr


@pytest.mark.slow
def test_missing_spec_file_exits_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "worker", "run", str(tmp_path / "no.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "cannot read spec" in done.stderr


@pytest.mark.slow
def test_bad_setting_and_absent_redis_are_clear_errors_not_tracebacks():
    env = dict(os.environ, STREAM_MAXLEN="abc")
    done = subprocess.run(
        [sys.executable, "-m", "worker", "dlq", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "STREAM_MAXLEN" in done.stderr
    assert "Traceback" not in done.stderr
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    done = subprocess.run(
        [sys.executable, "-m", "worker", "dlq", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "does not answer" in done.stderr
    assert "Traceback" not in done.stderr
