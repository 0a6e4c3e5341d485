"""The whole flow with known secret values: none may appear in any log, entry or answer."""

import json

import pytest
import requests

from .support import (
    SIGNUP,
    SIGNUP_WEBHOOK_SECRET,
    STRIPE_WEBHOOK_SECRET,
    TEST_KEY,
    entries,
    settled,
    sign_standard,
    sign_stripe,
    stripe_event,
    wait_for,
)

SECRETS = (
    TEST_KEY,
    STRIPE_WEBHOOK_SECRET,
    SIGNUP_WEBHOOK_SECRET,
    TEST_KEY[8:],
    STRIPE_WEBHOOK_SECRET[6:],
    SIGNUP_WEBHOOK_SECRET[6:],
)


@pytest.mark.slow
def test_no_secret_anywhere(start_web, start_worker, redis_client, settings, emulator):
    web = start_web()
    worker = start_worker()
    answers = []

    def post(route, body, headers):
        r = requests.post(
            f"{web.url}/webhooks/{route}",
            data=body,
            timeout=10,
            headers={"Content-Type": "application/json", **headers},
        )
        answers.append(r.text + json.dumps(dict(r.headers)))
        return r

    # A success, a Stripe event, and every kind of refusal the receiver gives.
    assert post("signup", SIGNUP, sign_standard(SIGNUP, "msg_s1")).status_code == 200
    event = stripe_event(
        "evt_s1", obj={"id": "in_1", "object": "invoice", "customer": "cus_missing"}
    )
    assert post("stripe", event, {"Stripe-Signature": sign_stripe(event)}).status_code == 200
    post("stripe", event, {"Stripe-Signature": sign_stripe(event, "whsec_wrong")})
    live = stripe_event("evt_live", livemode=True)
    post("stripe", live, {"Stripe-Signature": sign_stripe(live)})
    post(
        "signup",
        SIGNUP,
        {
            "webhook-id": "x",
            "webhook-timestamp": "1",
            "webhook-signature": f"v1,{SIGNUP_WEBHOOK_SECRET}",
        },
    )
    post("stripe", b"{}", {"Stripe-Signature": f"t=1,v1={STRIPE_WEBHOOK_SECRET}"})
    wait_for(lambda: entries(redis_client, settings, "customers"))
    wait_for(lambda: entries(redis_client, settings, "errors"))
    # Then the key is revoked: a 401 error entry whose message talks about the key.
    requests.post(f"{emulator.url}/_emulator/keys", json={"revoke": [TEST_KEY]}, timeout=5)
    other = SIGNUP.replace(b"u_123", b"u_456")
    post("signup", other, sign_standard(other, "msg_s2"))
    wait_for(lambda: len(entries(redis_client, settings, "errors")) == 2)
    wait_for(lambda: settled(redis_client, settings))  # every task ran to its end
    web.stop()
    worker.stop()

    places = {"web log": web.log(), "worker log": worker.log(), "answers": "\n".join(answers)}
    for stream in ("customers", "events", "errors"):
        places[stream] = json.dumps(entries(redis_client, settings, stream))
    assert "authentication_error" in places["errors"]
    for name, text in places.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret appears in the {name}"
