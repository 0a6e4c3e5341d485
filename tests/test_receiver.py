"""The receiver through Flask's test client: verification, dedupe, answers."""

import json
import time

import pytest

from .support import (
    LIVE_KEY,
    SIGNUP,
    STRIPE_WEBHOOK_SECRET,
    at_once,
    free_port,
    post_signup,
    post_stripe,
    queued,
    sign_standard,
    sign_stripe,
    stripe_event,
)


def test_valid_stripe_event_is_queued_once(client, redis_client, settings):
    r = post_stripe(client, stripe_event())
    assert r.status_code == 200
    assert r.json == {"received": True, "id": "evt_1", "duplicate": False}
    [message] = queued(redis_client, settings)
    assert message["task"] == "stripe_worker.handle_stripe_event"
    work = message["kwargs"]["work"]
    assert work["event"]["id"] == "evt_1" and work["work_id"] == "event:evt_1"


def test_duplicate_delivery_is_answered_but_not_queued(client, redis_client, settings):
    body = stripe_event()
    assert post_stripe(client, body).json["duplicate"] is False
    again = post_stripe(client, body)
    assert again.status_code == 200 and again.json["duplicate"] is True
    assert len(queued(redis_client, settings)) == 1


def test_concurrent_duplicates_queue_once(app, redis_client, settings):
    body = stripe_event("evt_concurrent")
    answers = at_once(8, lambda: post_stripe(app.test_client(), body).json)
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 7
    assert len(queued(redis_client, settings)) == 1


def now():
    return int(time.time())


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (lambda b: sign_stripe(b, "whsec_wrong"), "no signature matches"),
        (lambda b: sign_stripe(b + b" "), "no signature matches"),
        (lambda b: sign_stripe(b, timestamp=now() - 301), "too old"),
        (lambda b: sign_stripe(b, timestamp=now() + 301), "future"),
        (lambda b: "", "missing"),
        (lambda b: "garbage", "timestamp"),
        (lambda b: f"t={now()}", "no v1"),
        (lambda b: f"t={now()},v1=zz", "no v1"),
        (lambda b: f"t=abc,v1={'0' * 64}", "timestamp"),
        (lambda b: sign_stripe(b).replace("v1=", "v0="), "no v1"),
    ],
)
def test_bad_stripe_signatures_are_400(client, redis_client, settings, header, reason):
    body = stripe_event()
    r = post_stripe(client, body, header(body) or "")
    assert r.status_code == 400, r.json
    assert r.json["error"]["type"] == "signature_verification_error"
    assert reason in r.json["error"]["message"]
    assert queued(redis_client, settings) == []


def test_several_signatures_and_rotated_secrets(settings, redis_client, webhook_env):
    from webhooks import create_app
    from worker.vault import Vault

    webhook_env["STRIPE_WEBHOOK_SECRET"] = f"whsec_old_one_00001,{STRIPE_WEBHOOK_SECRET}"
    client = create_app(settings, vault=Vault(None, webhook_env)).test_client()
    body = stripe_event("evt_rot")
    stamp = now()
    other = sign_stripe(body, "whsec_unrelated", stamp).split(",")[1]
    header = f"{sign_stripe(body, timestamp=stamp)},{other}"
    assert post_stripe(client, body, header).status_code == 200
    old = sign_stripe(stripe_event("evt_old"), "whsec_old_one_00001")
    assert post_stripe(client, stripe_event("evt_old"), old).status_code == 200
    assert len(queued(redis_client, settings)) == 2


def test_tolerance_is_configurable(settings, webhook_env):
    from webhooks import create_app
    from worker.vault import Vault

    client = create_app(
        settings.with_(webhook_tolerance=3600), vault=Vault(None, webhook_env)
    ).test_client()
    body = stripe_event()
    assert post_stripe(client, body, sign_stripe(body, timestamp=now() - 1800)).status_code == 200


def test_livemode_mismatch_is_400(client, redis_client, settings):
    r = post_stripe(client, stripe_event(livemode=True))
    assert r.status_code == 400 and r.json["error"]["type"] == "livemode_mismatch"
    assert queued(redis_client, settings) == []


def test_live_key_refuses_test_events(settings, webhook_env, redis_client):
    from webhooks import create_app
    from worker.vault import Vault

    webhook_env["STRIPE_SECRET_KEY"] = LIVE_KEY
    client = create_app(settings, vault=Vault(None, webhook_env)).test_client()
    r = post_stripe(client, stripe_event(livemode=False))
    assert r.status_code == 400 and "live key" in r.json["error"]["message"]
    assert post_stripe(client, stripe_event("evt_live", livemode=True)).status_code == 200


@pytest.mark.parametrize(
    "body", [b"not json", b"\xff\xfe", b"[1,2]", b'{"id": 5}', b"[" * 100000 + b"]" * 100000]
)
def test_bad_json_or_shape_is_400(client, body, redis_client, settings):
    r = post_stripe(client, body)
    assert r.status_code == 400
    assert r.json["error"]["type"] in ("invalid_json", "invalid_payload")
    assert queued(redis_client, settings) == []


def test_body_over_the_limit_is_413(client):
    body = b"{" + b" " * (1024 * 1024) + b"}"
    r = post_stripe(client, body)
    assert r.status_code == 413 and r.json["error"]["type"] == "request_entity_too_large"


def test_wrong_method_and_unknown_route_are_json(client):
    r = client.get("/webhooks/stripe")
    assert r.status_code == 405 and r.json["error"]["type"] == "method_not_allowed"
    r = client.post("/nowhere")
    assert r.status_code == 404 and r.json["error"]["type"] == "not_found"


def test_missing_webhook_secret_is_503_not_500_and_says_where_only_in_the_log(
    settings, redis_client, tmp_path, caplog
):
    from webhooks import create_app
    from worker.vault import Vault

    client = create_app(settings, vault=Vault(tmp_path, {})).test_client()
    r = post_stripe(client, stripe_event())
    assert r.status_code == 503 and r.json["error"]["type"] == "not_configured"
    # A stranger learns neither the file nor the variable a secret is read from...
    for told in ("STRIPE_WEBHOOK_SECRET", "stripe_webhook_secret", str(tmp_path)):
        assert told not in r.get_data(as_text=True)
    # ...the operator's log does.
    assert f"{tmp_path}/stripe_webhook_secret" in caplog.text
    assert "STRIPE_WEBHOOK_SECRET" in caplog.text


# -- signup -----------------------------------------------------------------------------


def test_signup_becomes_one_create_customer(client, redis_client, settings):
    r = post_signup(client)
    assert r.status_code == 200 and r.json == {"received": True, "id": "msg_1", "duplicate": False}
    [message] = queued(redis_client, settings)
    assert message["task"] == "stripe_worker.create_customer"
    work = message["kwargs"]["work"]
    assert work["spec"]["Body"] == {
        "email": "jenny.rosen@example.com",
        "name": "Jenny Rosen",
        "metadata": {"plan": "pro", "user_id": "u_123"},
    }
    assert work["idempotency_key"] == "signup-u_123"
    assert work["source"] == "signup" and work["source_id"] == "msg_1"


def test_svix_header_names_are_accepted(client, redis_client, settings):
    r = post_signup(client, headers=sign_standard(SIGNUP, "msg_svix", prefix="svix"))
    assert r.status_code == 200 and r.json["id"] == "msg_svix"


def test_signup_duplicate_delivery(client, redis_client, settings):
    assert post_signup(client).json["duplicate"] is False
    assert post_signup(client).json["duplicate"] is True
    assert len(queued(redis_client, settings)) == 1


CLERK = {
    "type": "user.created",
    "object": "event",
    "data": {
        "id": "user_29w83sxmDNGwOuEthce5gg56FcC",
        "object": "user",
        "first_name": "Example",
        "last_name": "Example",
        "primary_email_address_id": "idn_29w83yL7CwVlJXylYLxcslromF1",
        "email_addresses": [
            {"id": "idn_other", "email_address": "old@example.org"},
            {"id": "idn_29w83yL7CwVlJXylYLxcslromF1", "email_address": "example@example.org"},
        ],
    },
}


def test_clerk_user_created_is_recognised(client, redis_client, settings):
    body = json.dumps(CLERK).encode()
    assert post_signup(client, body, sign_standard(body, "msg_clerk")).status_code == 200
    [message] = queued(redis_client, settings)
    spec = message["kwargs"]["work"]["spec"]
    assert spec["Body"]["email"] == "example@example.org"
    assert spec["Body"]["name"] == "Example Example"
    assert spec["Body"]["metadata"]["user_id"] == "user_29w83sxmDNGwOuEthce5gg56FcC"
    assert spec["idempotency_key"] == "signup-user_29w83sxmDNGwOuEthce5gg56FcC"


def test_other_signup_events_are_acknowledged_not_queued(client, redis_client, settings):
    body = json.dumps({"type": "user.updated", "data": {"id": "user_1"}}).encode()
    r = post_signup(client, body, sign_standard(body, "msg_upd"))
    assert r.status_code == 200
    assert queued(redis_client, settings) == []


@pytest.mark.parametrize(
    "change", ["secret", "body", "stale", "future", "no-id", "garbled", "version"]
)
def test_bad_standard_signatures_are_400(client, redis_client, settings, change):
    headers = sign_standard(SIGNUP, "msg_bad")
    body = SIGNUP
    if change == "secret":
        headers = sign_standard(SIGNUP, "msg_bad", secret="whsec_" + "QUJD" * 8)
    elif change == "body":
        body = SIGNUP.replace(b"u_123", b"u_999")
    elif change == "stale":
        headers = sign_standard(SIGNUP, "msg_bad", timestamp=time.time() - 400)
    elif change == "future":
        headers = sign_standard(SIGNUP, "msg_bad", timestamp=time.time() + 400)
    elif change == "no-id":
        del headers["webhook-id"]
    elif change == "garbled":
        headers["webhook-signature"] = "v1,%%%not-base64 nonsense"
    elif change == "version":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    r = post_signup(client, body, headers)
    assert r.status_code == 400 and r.json["error"]["type"] == "signature_verification_error"
    assert queued(redis_client, settings) == []


def test_signup_without_user_id_is_400(client, redis_client, settings):
    body = json.dumps({"type": "user.created", "data": {"email": "a@example.com"}}).encode()
    r = post_signup(client, body, sign_standard(body, "msg_x"))
    assert r.status_code == 400 and "user id" in r.json["error"]["message"]


def test_signup_with_a_bad_email_is_400(client):
    body = json.dumps(
        {"type": "user.created", "data": {"user_id": "u_1", "email": "not-an-email"}}
    ).encode()
    r = post_signup(client, body, sign_standard(body, "msg_y"))
    assert r.status_code == 400 and "email" in r.json["error"]["message"]


# -- health and metrics -------------------------------------------------------------------


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json == {"ready": True}
    post_stripe(client, stripe_event("evt_m"))
    post_stripe(client, stripe_event("evt_m"))
    post_stripe(client, stripe_event("evt_n"), "garbage")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'stripe_worker_webhooks_total{outcome="accepted",route="stripe"} 1.0' in text
    assert 'stripe_worker_webhooks_total{outcome="duplicate",route="stripe"} 1.0' in text
    assert 'outcome="rejected_signature_verification_error"' in text
    assert "stripe_worker_webhook_seconds_bucket" in text


def test_readyz_is_503_when_redis_is_gone(settings, webhook_env):
    from webhooks import create_app
    from worker.vault import Vault

    dead = settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = create_app(dead, vault=Vault(None, webhook_env)).test_client()
    assert client.get("/readyz").status_code == 503
    r = post_stripe(client, stripe_event())
    assert r.status_code == 503 and r.json["error"]["type"] == "unavailable"
