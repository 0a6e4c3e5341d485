"""Every string a sender can sign: arbitrary JSON, lone surrogates, deep nesting and big
numbers, validly signed, at both routes. Never a 5xx; and every signup answered 200 ends
as a customer or an error entry that is not `internal_error`.

The property runs on Flask's test client (hundreds of examples in seconds); a bounded set
of the same bodies then goes over real HTTP to gunicorn and a real worker process.
"""

import json
from collections import Counter

import pytest
import requests
from hypothesis import HealthCheck, given
from hypothesis import event as note_event
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from .support import entries, post_stripe, sign_standard, sign_stripe, wait_for
from .support.hostile import bodies, encode, signup_events, stripe_events

# The receiver's error types for a signed body it cannot use (README, "The receiver's
# answers"): anything else, or any 5xx, is a bug.
REFUSALS = {"invalid_json", "invalid_payload", "livemode_mismatch"}


def check_answer(status: int, body: bytes) -> dict:
    answer = json.loads(body)
    assert status in (200, 400), (status, body[:300])
    if status == 400:
        assert set(answer["error"]) == {"type", "message"}
        assert answer["error"]["type"] in REFUSALS, answer
    return answer


@pytest.mark.slow
@hsettings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=bodies, escaped=st.booleans(), n=st.integers(0, 10**9))
def test_hostile_json_validly_signed_is_never_5xx_at_either_route(client, value, escaped, n):
    body = encode(value, escaped)
    stripe = client.post(
        "/webhooks/stripe", data=body, headers={"Stripe-Signature": sign_stripe(body)}
    )
    signup = client.post("/webhooks/signup", data=body, headers=sign_standard(body, f"msg_h{n}"))
    for route, answer in (("stripe", stripe), ("signup", signup)):
        shown = check_answer(answer.status_code, answer.data)
        note_event(f"{route} {answer.status_code} {shown.get('error', {}).get('type', '')}")


def collect(strategy: st.SearchStrategy, count: int) -> list:
    """`count` examples of `strategy`, the same each run (derandomized)."""
    found: list = []

    @hsettings(max_examples=count, deadline=None, database=None, derandomize=True)
    @given(strategy)
    def gather(value):
        found.append(value)

    gather()
    return found


# A signed event whose data.object is not an object: found by the property below, once, as
# internal_error ('list' object has no attribute 'get'); here for every run.
ODD_OBJECTS = ([{"customer": "cus_1"}], "cus_1", 7, True, None, [])


def test_an_event_whose_object_is_not_an_object_is_published_not_internal(
    client, start_inprocess_worker, redis_client, settings
):
    for i, obj in enumerate(ODD_OBJECTS):
        event = {"id": f"evt_odd_{i}", "object": "event", "type": "customer.created",
                 "livemode": False, "data": {"object": obj}}  # fmt: skip
        assert post_stripe(client, json.dumps(event).encode()).status_code == 200
    start_inprocess_worker()
    found = wait_for(lambda: len(entries(redis_client, settings, "events")) == len(ODD_OBJECTS))
    assert found
    assert entries(redis_client, settings, "errors") == []
    for entry in entries(redis_client, settings, "events"):
        assert (entry["component"], entry["customerId"]) == ("", ""), entry


@pytest.mark.slow
def test_hostile_signups_over_http_end_as_customers_or_errors_never_internal(
    start_web, start_worker, redis_client, settings, emulator
):
    web = start_web()
    start_worker()
    # A user id of each signup's own, so no two are the same user; the rest is hostile.
    signups = collect(st.tuples(signup_events(), st.booleans()), 40)
    accepted: list[str] = []
    for i, (event, escaped) in enumerate(signups):
        event["data"]["user_id"] = f"u_hostile_{i}_" + str(event["data"]["user_id"])[:20]
        body, msg_id = encode(event, escaped), f"msg_hostile_{i}"
        answer = requests.post(
            f"{web.url}/webhooks/signup", data=body, headers=sign_standard(body, msg_id), timeout=10
        )
        check_answer(answer.status_code, answer.content)
        if answer.status_code == 200:
            accepted.append(msg_id)
    events_accepted: set[str] = set()
    for event, escaped in collect(st.tuples(stripe_events, st.booleans()), 20):
        body = encode(event, escaped)
        answer = requests.post(
            f"{web.url}/webhooks/stripe",
            data=body,
            headers={"Stripe-Signature": sign_stripe(body)},
            timeout=10,
        )
        if check_answer(answer.status_code, answer.content).get("duplicate") is False:
            events_accepted.add(event["id"])
    assert accepted  # the set holds signups the receiver takes, not only refusals

    def ended() -> dict[str, dict]:
        found = {}
        for stream in ("customers", "events", "errors"):
            for entry in entries(redis_client, settings, stream):
                found[entry["source_id"]] = entry
        return found if set(accepted) | events_accepted <= set(found) else {}

    outcomes = wait_for(ended, timeout=120)
    internal = [e for e in outcomes.values() if e.get("error_type") == "internal_error"]
    assert internal == []  # signups and events alike
    ends = Counter(e.get("error_type") or e.get("component") or "event" for e in outcomes.values())
    print(
        f"{len(signups)} hostile signups, {len(accepted)} accepted; "
        f"{len(events_accepted)} hostile events accepted; they ended as {dict(ends)}"
    )
