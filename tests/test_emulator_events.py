"""The emulator's `GET /v1/events` over real HTTP, through the official SDK where it pages:
newest first, both cursors, the filters Stripe documents, 30 days, connected accounts."""

import time

import pytest
import requests
import stripe

from worker.devtools.emulator import EmulatorServer

from .support import TEST_KEY, wait_for
from .test_emulator import call, schema_validator

ACCOUNT = "acct_1Connected0001"


def sdk(emulator) -> stripe.StripeClient:
    return stripe.StripeClient(TEST_KEY, base_addresses={"api": emulator.url})


def make_customers(emulator, n: int, account: str | None = None) -> list[str]:
    options = {"stripe_account": account} if account else {}
    client = sdk(emulator)
    return [
        client.v1.customers.create(params={"email": f"c{i}@example.com"}, options=options).id
        for i in range(n)
    ]


def test_its_api_calls_make_events_listed_newest_first_in_stripes_shape(emulator):
    [customer] = make_customers(emulator, 1)
    call(emulator, "POST", f"/v1/customers/{customer}", data={"name": "Jenny"})
    call(emulator, "DELETE", f"/v1/customers/{customer}")
    listed = call(emulator, "GET", "/v1/events").json()
    assert (listed["object"], listed["url"], listed["has_more"]) == ("list", "/v1/events", False)
    assert [e["type"] for e in listed["data"]] == [
        "customer.deleted",
        "customer.updated",
        "customer.created",
    ]
    for event in listed["data"]:
        schema_validator("event").validate(event)
        assert event["data"]["object"]["id"] == customer and "account" not in event
    assert listed["data"][1]["data"]["object"]["name"] == "Jenny"
    assert listed["data"][2]["data"]["object"]["name"] is None  # the object as it was then
    one = call(emulator, "GET", f"/v1/events/{listed['data'][0]['id']}").json()
    assert one == listed["data"][0]


def test_pages_both_ways_and_ending_before_walks_in_created_order(emulator):
    made = make_customers(emulator, 7)
    client = sdk(emulator)
    newest_first = [
        e.data.object.id for e in client.v1.events.list(params={"limit": 3}).auto_paging_iter()
    ]
    assert newest_first == made[::-1]
    first = client.v1.events.list(params={"limit": 100}).data[-1]
    after_first = client.v1.events.list(params={"ending_before": first.id, "limit": 2})
    assert [e.data.object.id for e in after_first.auto_paging_iter()] == made[1:]
    page = call(emulator, "GET", "/v1/events", params={"ending_before": first.id, "limit": 2})
    assert [e["data"]["object"]["id"] for e in page.json()["data"]] == made[2:0:-1]
    assert page.json()["has_more"] is True
    missing = call(emulator, "GET", "/v1/events", params={"starting_after": "evt_nope"})
    assert (missing.status_code, missing.json()["error"]["param"]) == (404, "starting_after")


def test_filters_created_type_types_and_delivery_success(emulator):
    now = int(time.time())
    old = requests.post(
        emulator.url + "/_emulator/events",
        json={"type": "invoice.paid", "object": {"object": "invoice"}, "created": now - 100},
        timeout=5,
    ).json()
    make_customers(emulator, 2)

    def types(**params) -> list[str]:
        answer = call(emulator, "GET", "/v1/events", params=params)
        assert answer.status_code == 200, answer.text
        return [e["type"] for e in answer.json()["data"]]

    assert types(**{"created[lt]": now - 50}) == ["invoice.paid"]
    assert types(**{"created[gte]": now - 50}) == ["customer.created"] * 2
    assert types(created=now - 100) == ["invoice.paid"]
    assert types(type="customer.*") == ["customer.created"] * 2
    assert types(**{"types[0]": "invoice.paid", "types[1]": "x.y"}) == ["invoice.paid"]
    assert len(types(delivery_success="false")) == 3
    delivered = requests.post(
        emulator.url + "/_emulator/events/delivered", json={"ids": [old["id"]]}, timeout=5
    )
    assert delivered.json() == {"marked": 1}
    assert types(delivery_success="true") == ["invoice.paid"]
    assert types(delivery_success="false") == ["customer.created"] * 2
    both = call(emulator, "GET", "/v1/events", params={"type": "a", "types[0]": "b"})
    assert both.status_code == 400


def test_events_older_than_30_days_are_out_of_reach(emulator):
    requests.post(
        emulator.url + "/_emulator/events",
        json={"type": "invoice.paid", "object": {}, "created": int(time.time()) - 31 * 86400},
        timeout=5,
    )
    assert call(emulator, "GET", "/v1/events").json()["data"] == []


def test_connected_accounts_have_their_own_customers_and_events(emulator):
    [connected] = make_customers(emulator, 1, ACCOUNT)
    make_customers(emulator, 1)
    header = {"Stripe-Account": ACCOUNT}
    events = call(emulator, "GET", "/v1/events", headers=header).json()["data"]
    assert [(e["account"], e["data"]["object"]["id"]) for e in events] == [(ACCOUNT, connected)]
    assert call(emulator, "GET", f"/v1/customers/{connected}").status_code == 404
    found = call(emulator, "GET", f"/v1/customers/{connected}", headers=header)
    assert found.status_code == 200 and found.headers["Stripe-Account"] == ACCOUNT
    assert len(call(emulator, "GET", "/v1/events").json()["data"]) == 1  # the platform's own
    bad = call(emulator, "GET", "/v1/events", headers={"Stripe-Account": "not an account"})
    assert bad.status_code == 400


@pytest.mark.parametrize("limit", ["0", "101", "x"])
def test_a_limit_out_of_range_is_refused_as_stripe_does(emulator, limit):
    answer = call(emulator, "GET", "/v1/events", params={"limit": limit})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "limit"


def test_its_events_are_delivered_signed_retried_and_marked_as_stripe_does():
    """`forward_to` (dev's, like `stripe listen --forward-to`): each event an API call makes
    is POSTed with a Stripe-Signature the SDK verifies, a 500 is tried again, and the 2xx
    marks it delivered (`delivery_success`)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    secret = "whsec_forwarded_test_secret"
    got: list[tuple[int, dict]] = []

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            event = stripe.Webhook.construct_event(body, self.headers["Stripe-Signature"], secret)
            status = 500 if not got else 200  # the first attempt fails
            got.append((status, json.loads(body)))
            assert event["id"] == got[-1][1]["id"]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    own_emulator = EmulatorServer("127.0.0.1", 0).start()
    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    forwarder = own_emulator.state.forward_to(
        f"http://127.0.0.1:{endpoint.server_address[1]}/webhooks/stripe", secret
    )
    try:
        [customer] = make_customers(own_emulator, 1)
        events = sdk(own_emulator).v1.events
        wait_for(lambda: not events.list(params={"delivery_success": False}).data)
        assert [(status, e["type"], e["data"]["object"]["id"]) for status, e in got] == [
            (500, "customer.created", customer),
            (200, "customer.created", customer),
        ]
    finally:
        forwarder.stop()
        endpoint.shutdown()
        endpoint.server_close()
        own_emulator.stop()
