"""The emulator over real HTTP: Stripe's wire format, errors, idempotency and faults."""

import base64
import json
import time
from pathlib import Path

import jsonschema
import pytest
import requests
import stripe

from worker.devtools.emulator import IDEMPOTENCY_TTL, EmulatorServer

from .support import LIVE_KEY, TEST_KEY

SPEC = json.loads((Path(__file__).parent / "data" / "customer-openapi.json").read_text())
SPEC_SCHEMAS = set(SPEC["components"]["schemas"])


def _nullable(node):
    """OpenAPI 3.0's `nullable: true` in JSON Schema's words."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    if ref.startswith("#/components/schemas/") and ref.split("/")[-1] not in SPEC_SCHEMAS:
        return {}  # a schema outside the extract (card, source, ...): not checked here
    node = {k: _nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def schema_validator(name):
    schema = {"$ref": f"#/components/schemas/{name}", "components": _nullable(SPEC["components"])}
    return jsonschema.Draft202012Validator(schema)


def call(emulator, method, path, key=TEST_KEY, **kwargs):
    headers = kwargs.pop("headers", {})
    if key:
        headers.setdefault("Authorization", f"Bearer {key}")
    return requests.request(method, emulator.url + path, headers=headers, timeout=5, **kwargs)


def test_created_customer_matches_stripes_schema(emulator):
    r = call(
        emulator,
        "POST",
        "/v1/customers",
        data={
            "email": "a@example.com",
            "name": "A",
            "metadata[user_id]": "u_1",
            "address[city]": "Berlin",
            "preferred_locales[0]": "de",
        },
    )
    assert r.status_code == 200
    customer = r.json()
    schema_validator("customer").validate(customer)
    assert customer["metadata"] == {"user_id": "u_1"}
    assert customer["preferred_locales"] == ["de"]
    assert customer["address"]["city"] == "Berlin"


def test_fixture_customer_has_no_field_the_emulator_lacks(emulator):
    fixture_keys = set(SPEC["components"]["schemas"]["customer"]["required"])
    customer = call(emulator, "POST", "/v1/customers").json()
    assert fixture_keys <= set(customer)


def test_errors_and_deleted_customer_match_stripes_schema(emulator):
    missing = call(emulator, "GET", "/v1/customers/cus_nope")
    assert missing.status_code == 404
    schema_validator("error").validate(missing.json())
    assert missing.json()["error"]["code"] == "resource_missing"
    cid = call(emulator, "POST", "/v1/customers").json()["id"]
    deleted = call(emulator, "DELETE", f"/v1/customers/{cid}")
    schema_validator("deleted_customer").validate(deleted.json())
    assert call(emulator, "GET", f"/v1/customers/{cid}").json()["deleted"] is True


def test_response_headers(emulator):
    r = call(emulator, "POST", "/v1/customers", headers={"Idempotency-Key": "h1"})
    assert r.headers["Request-Id"].startswith("req_")
    assert r.headers["Stripe-Version"]
    assert r.headers["Idempotency-Key"] == "h1"


@pytest.mark.parametrize(
    "auth", [None, "Bearer sk_test_unknownkey", "Bearer nonsense", "Token abc", "Basic !!!"]
)
def test_missing_or_bad_key_is_401_in_stripes_shape(emulator, auth):
    emulator.state.allowed_keys = {TEST_KEY}
    headers = {"Authorization": auth} if auth else {}
    r = call(emulator, "GET", "/v1/customers", key=None, headers=headers)
    assert r.status_code == 401
    schema_validator("error").validate(r.json())
    emulator.state.allowed_keys = set()


def test_basic_auth_like_curl_u(emulator):
    token = base64.b64encode(f"{TEST_KEY}:".encode()).decode()
    r = call(
        emulator, "GET", "/v1/customers", key=None, headers={"Authorization": f"Basic {token}"}
    )
    assert r.status_code == 200 and r.json()["object"] == "list"


def test_state_is_kept_per_key_mode(emulator):
    cid = call(emulator, "POST", "/v1/customers", key=LIVE_KEY).json()["id"]
    assert call(emulator, "GET", f"/v1/customers/{cid}", key=LIVE_KEY).json()["livemode"] is True
    assert call(emulator, "GET", f"/v1/customers/{cid}").status_code == 404
    stats = call(emulator, "GET", "/_emulator/stats").json()
    assert stats["created"] == {"test": 0, "live": 1}


def test_update_merges_metadata(emulator):
    cid = call(
        emulator, "POST", "/v1/customers", data={"metadata[a]": "1", "metadata[b]": "2"}
    ).json()["id"]
    r = call(
        emulator,
        "POST",
        f"/v1/customers/{cid}",
        data={"metadata[b]": "", "metadata[c]": "3", "name": "New"},
    )
    assert r.json()["metadata"] == {"a": "1", "c": "3"} and r.json()["name"] == "New"


def test_list_with_limit_cursor_and_email(emulator):
    ids = [
        call(emulator, "POST", "/v1/customers", data={"email": f"u{i}@example.com"}).json()["id"]
        for i in range(5)
    ]
    page = call(emulator, "GET", "/v1/customers", params={"limit": 2}).json()
    assert [c["id"] for c in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = call(
        emulator,
        "GET",
        "/v1/customers",
        params={"limit": 10, "starting_after": page["data"][-1]["id"]},
    ).json()
    assert [c["id"] for c in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
    by_email = call(emulator, "GET", "/v1/customers", params={"email": "u3@example.com"}).json()
    assert [c["id"] for c in by_email["data"]] == [ids[3]]
    assert call(emulator, "GET", "/v1/customers", params={"limit": 0}).status_code == 400


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"favourite": "x"}, "parameter_unknown"),
        ({"email": "nope"}, "email_invalid"),
        ({"balance": "lots"}, "parameter_invalid_integer"),
        ({"address[planet]": "Mars"}, "parameter_unknown"),
        ({"metadata": "x"}, "parameter_invalid_object"),
        # Digit names at the top level are unknown parameters, not a list (found by mypy:
        # the form decoder returned a list for them, and the emulator answered 500).
        ({"0": "x"}, "parameter_unknown"),
    ],
)
def test_invalid_parameters_are_400_with_a_code(emulator, data, code):
    r = call(emulator, "POST", "/v1/customers", data=data)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code and r.json()["error"]["param"]


def test_idempotency_replay_mismatch_and_expiry(emulator):
    first = call(
        emulator,
        "POST",
        "/v1/customers",
        data={"email": "a@example.com"},
        headers={"Idempotency-Key": "k"},
    )
    again = call(
        emulator,
        "POST",
        "/v1/customers",
        data={"email": "a@example.com"},
        headers={"Idempotency-Key": "k"},
    )
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = call(
        emulator,
        "POST",
        "/v1/customers",
        data={"email": "b@example.com"},
        headers={"Idempotency-Key": "k"},
    )
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    # After 24 h the key is forgotten, as at Stripe: the same request makes a new customer.
    for stored in emulator.state.idempotency.values():
        stored.at -= IDEMPOTENCY_TTL + 1
    later = call(
        emulator,
        "POST",
        "/v1/customers",
        data={"email": "a@example.com"},
        headers={"Idempotency-Key": "k"},
    )
    assert later.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in later.headers


def test_a_failed_request_is_replayed_as_failed(emulator):
    bad = call(
        emulator,
        "POST",
        "/v1/customers",
        data={"email": "nope"},
        headers={"Idempotency-Key": "bad"},
    )
    again = call(
        emulator,
        "POST",
        "/v1/customers",
        data={"email": "nope"},
        headers={"Idempotency-Key": "bad"},
    )
    assert bad.status_code == again.status_code == 400
    assert again.headers["Idempotent-Replayed"] == "true"


def test_injected_faults_count_down(emulator):
    call(
        emulator,
        "POST",
        "/_emulator/faults",
        json={"status": 429, "count": 2, "should_retry": "true"},
    )
    codes = [call(emulator, "GET", "/v1/customers").status_code for _ in range(3)]
    assert codes == [429, 429, 200]
    r = call(emulator, "POST", "/_emulator/faults", json={"status": 500, "count": 1})
    r = call(emulator, "GET", "/v1/customers")
    assert r.status_code == 500 and r.json()["error"]["type"] == "api_error"
    assert call(emulator, "GET", "/_emulator/stats").json()["faults"] == 3


def test_latency_is_added(emulator):
    call(emulator, "POST", "/_emulator/faults", json={"latency_ms": 200})
    started = time.monotonic()
    call(emulator, "GET", "/v1/customers")
    assert time.monotonic() - started >= 0.2


def test_official_sdk_talks_to_it(emulator):
    client = stripe.StripeClient(TEST_KEY, base_addresses={"api": emulator.url})
    created = client.v1.customers.create(
        params={"email": "sdk@example.com", "metadata": {"k": "v"}}
    )
    assert created.metadata["k"] == "v"
    listed = client.v1.customers.list(params={"email": "sdk@example.com"})
    assert [c.id for c in listed.data] == [created.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.retrieve("cus_missing")


def test_unknown_route_is_404_and_unknown_fault_400(emulator):
    assert call(emulator, "GET", "/v1/charges").status_code == 404
    assert call(emulator, "POST", "/_emulator/faults", json={"explode": 1}).status_code == 400


@pytest.mark.slow
def test_it_serves_thousands_of_requests(emulator):
    """Not a timing assertion: many sequential keep-alive requests all answer."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TEST_KEY}"
    codes = {session.get(emulator.url + "/v1/customers", timeout=5).status_code for _ in range(500)}
    assert codes == {200}


def test_standalone_server_binds_a_port():
    server = EmulatorServer("127.0.0.1", 0).start()
    try:
        assert call(server, "GET", "/v1/customers").status_code == 200
    finally:
        server.stop()
