"""Both components through the official SDK, over real HTTP, against the emulator."""

import json

import pytest
import requests

from tasks.components import run_component
from tasks.stripe_gateway import StripeGateway
from worker.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    RateLimited,
    SpecError,
    StripeUnavailable,
    is_retryable,
)
from worker.spec import ComponentSpec

from .support import LIVE_KEY, TEST_KEY, at_once, emulator_stats, faults, free_port

CREATE = {
    "component": "stripe.createCustomer",
    "trigger": "true",
    "Body": {"email": "jenny.rosen@example.com", "name": "Jenny Rosen"},
}


@pytest.fixture
def gateway(settings, vault):
    return StripeGateway(settings, vault)


def create(gateway, key=None, **body):
    spec = dict(CREATE, Body=body or CREATE["Body"])
    return run_component(ComponentSpec.parse(spec), gateway, idempotency_key=key)


def test_create_customer_outputs(gateway, emulator):
    out = create(gateway)
    assert set(out) == {"customerId", "Response", "Headers"}
    assert out["customerId"].startswith("cus_")
    assert out["Response"]["id"] == out["customerId"]
    assert out["Response"]["email"] == "jenny.rosen@example.com"
    assert out["Response"]["livemode"] is False
    assert out["Headers"]["Request-Id"].startswith("req_")
    assert "Stripe-Version" in out["Headers"]
    json.dumps(out)  # outputs are plain JSON
    assert emulator_stats(emulator)["created"]["test"] == 1


def test_get_customer_outputs(gateway):
    created = create(gateway)
    spec = ComponentSpec.parse(
        {"component": "stripe.getStripeCustomer", "customer_id": created["customerId"]}
    )
    out = run_component(spec, gateway)
    assert list(out) == ["customerId", "customerEmail", "Response", "Headers"]
    assert out["customerId"] == created["customerId"]
    assert out["customerEmail"] == "jenny.rosen@example.com"
    assert out["Response"] == created["Response"]


def test_metadata_round_trip_and_custom_outputs(gateway):
    spec = ComponentSpec.parse(
        dict(
            CREATE,
            Body={
                "email": "a@example.com",
                "metadata": {"user_id": "u_1", "plan": "pro"},
                "address": {"city": "Berlin"},
            },
            outputs={
                "userId": "Response.metadata.user_id",
                "requestId": "Headers.Request-Id",
                "nothing": "Response.metadata.absent",
            },
        )
    )
    out = run_component(spec, gateway)
    assert out["Response"]["metadata"] == {"user_id": "u_1", "plan": "pro"}
    assert out["Response"]["address"]["city"] == "Berlin"
    assert out["userId"] == "u_1"
    assert out["requestId"] == out["Headers"]["Request-Id"]
    assert out["nothing"] is None


def test_idempotent_replay_returns_the_first_customer(gateway, emulator):
    first = create(gateway, key="signup-u_1")
    second = create(gateway, key="signup-u_1")
    assert second["customerId"] == first["customerId"]
    assert second["Headers"].get("Idempotent-Replayed") == "true"
    assert emulator_stats(emulator)["created"]["test"] == 1


def test_idempotency_key_with_other_parameters_is_permanent(gateway, emulator):
    create(gateway, key="k1")
    with pytest.raises(InvalidRequest) as info:
        create(gateway, key="k1", email="other@example.com")
    assert "idempotency" in info.value.message
    assert not is_retryable(info.value)
    assert emulator_stats(emulator)["created"]["test"] == 1


def test_concurrent_requests_with_one_key_make_one_customer(gateway, emulator):
    faults(emulator, latency_ms=100)

    def attempt():
        try:
            return create(gateway, key="same")["customerId"]
        except StripeUnavailable as exc:  # 409: the first is still in flight
            return exc

    answers = at_once(5, attempt)
    results = [a for a in answers if isinstance(a, str)]
    errors = [a for a in answers if not isinstance(a, str)]
    assert emulator_stats(emulator)["created"]["test"] == 1
    assert len(set(results)) == 1
    assert all(e.http_status == 409 and is_retryable(e) for e in errors)


def test_500_then_success_with_sdk_retries_makes_one_customer(settings, vault, emulator):
    faults(emulator, status=500, count=1)
    gateway = StripeGateway(settings, vault, max_network_retries=2)
    out = create(gateway, key="k-500")
    assert out["customerId"].startswith("cus_")
    assert emulator_stats(emulator)["created"]["test"] == 1
    assert emulator_stats(emulator)["faults"] == 1


def test_500_is_temporary(gateway, emulator):
    faults(emulator, status=500, count=1)
    with pytest.raises(StripeUnavailable) as info:
        create(gateway)
    assert info.value.error_type == "api_error" and info.value.http_status == 500
    assert is_retryable(info.value)
    assert info.value.request_id.startswith("req_")


def test_should_retry_false_makes_500_permanent(gateway, emulator):
    faults(emulator, status=500, count=1, should_retry="false")
    with pytest.raises(StripeUnavailable) as info:
        create(gateway)
    assert not is_retryable(info.value)


def test_429_is_temporary(gateway, emulator):
    faults(emulator, status=429, count=1, should_retry="true")
    with pytest.raises(RateLimited) as info:
        create(gateway)
    assert info.value.error_type == "rate_limit" and is_retryable(info.value)


def test_rate_limit_answers_429(gateway, emulator):
    faults(emulator, rate_limit=2)
    seen = []
    for _ in range(6):
        try:
            create(gateway)
            seen.append(200)
        except RateLimited:
            seen.append(429)
    assert 429 in seen and seen[0] == 200


def test_revoked_key_is_a_clear_permanent_401(gateway, emulator):
    requests.post(f"{emulator.url}/_emulator/keys", json={"revoke": [TEST_KEY]}, timeout=5)
    with pytest.raises(AuthenticationFailed) as info:
        create(gateway)
    err = info.value
    assert (err.error_type, err.http_status, is_retryable(err)) == (
        "authentication_error",
        401,
        False,
    )
    assert "revoked" in err.message and TEST_KEY not in err.message


def test_unknown_customer_is_not_found(gateway):
    spec = ComponentSpec.parse(
        {"component": "stripe.getStripeCustomer", "customer_id": "cus_ABC123XYZ456"}
    )
    with pytest.raises(NotFound) as info:
        run_component(spec, gateway)
    assert info.value.error_type == "not_found" and info.value.http_status == 404
    assert "cus_ABC123XYZ456" in info.value.message and not is_retryable(info.value)


def test_deleted_customer_is_not_found(gateway, settings):
    created = create(gateway)
    requests.delete(
        f"{settings.stripe_api_base}/v1/customers/{created['customerId']}",
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        timeout=5,
    )
    spec = ComponentSpec.parse(
        {"component": "stripe.getStripeCustomer", "customer_id": created["customerId"]}
    )
    with pytest.raises(NotFound, match="deleted"):
        run_component(spec, gateway)


def test_unknown_stripe_parameter_is_a_permanent_400(gateway):
    with pytest.raises(InvalidRequest) as info:
        create(gateway, email="a@example.com", favourite_colour="blue")
    assert info.value.http_status == 400 and "favourite_colour" in info.value.message
    assert not is_retryable(info.value)


def test_connection_refused_is_temporary(settings, vault):
    gateway = StripeGateway(
        settings.with_(stripe_api_base=f"http://127.0.0.1:{free_port()}"), vault
    )
    with pytest.raises(ConnectionFailed) as info:
        create(gateway)
    assert info.value.error_type == "connection_error" and is_retryable(info.value)


def test_timeout_is_temporary(settings, vault, emulator):
    faults(emulator, hang_count=1, hang_seconds=2)
    gateway = StripeGateway(settings.with_(stripe_timeout=0.5), vault)
    with pytest.raises(ConnectionFailed):
        create(gateway, key="slow")


def test_live_key_sees_live_mode_only(settings, emulator):
    from worker.vault import Vault

    both = Vault(None, {"STRIPE_SECRET_KEY": TEST_KEY, "LIVE_KEY": LIVE_KEY})
    gateway = StripeGateway(settings, both)
    created = create(gateway)
    spec = ComponentSpec.parse(
        {
            "component": "stripe.getStripeCustomer",
            "api_secret": "live_key",
            "customer_id": created["customerId"],
        }
    )
    with pytest.raises(NotFound):
        run_component(spec, gateway)
    live = run_component(ComponentSpec.parse(dict(CREATE, api_secret="live_key")), gateway)
    assert live["Response"]["livemode"] is True


BAD_SPECS = [
    ("not json", "not valid JSON"),
    ([], "JSON object"),
    ({"component": "stripe.deleteEverything"}, "unknown component"),
    ({"component": "stripe.getStripeCustomer"}, "needs a customer_id"),
    ({"component": "stripe.getStripeCustomer", "customer_id": "../../v1/charges"}, "customer_id"),
    ({"component": "stripe.getStripeCustomer", "customer_id": 42}, "customer_id"),
    ({"component": "stripe.createCustomer", "Body": {}}, "trigger"),
    (dict(CREATE, Body="email=a@b.c"), "Body must be a JSON object"),
    (dict(CREATE, Body={"email": "not-an-email"}), "not an email"),
    (dict(CREATE, Body={"metadata": {"a": {"b": 1}}}), "metadata.a"),
    (dict(CREATE, Body={"metadata": ["x"]}), "metadata"),
    (dict(CREATE, Body={"a[b]": "x"}), "not a valid parameter name"),
    (dict(CREATE, Body={"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}), "nests too deeply"),
    (dict(CREATE, idempotency_key=""), "idempotency_key"),
    (dict(CREATE, api_secret=""), "api_secret"),
    (dict(CREATE, outputs={"x": "Body.email"}), "path starts with"),
    (dict(CREATE, surprise=1), "does not take"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_spec_is_a_clear_error_before_any_call(spec, message, emulator):
    with pytest.raises(SpecError, match=message):
        ComponentSpec.parse(spec if isinstance(spec, str) else json.dumps(spec))
    assert emulator_stats(emulator)["requests"] == 0


def test_bad_secret_name_makes_no_call(gateway, emulator):
    spec = ComponentSpec.parse(dict(CREATE, api_secret="../../etc/passwd"))
    with pytest.raises(SpecError):
        run_component(spec, gateway)
    assert emulator_stats(emulator)["requests"] == 0


def test_spec_round_trips_as_plain_json():
    spec = ComponentSpec.parse(dict(CREATE, idempotency_key="k", outputs=["Response.email"]))
    assert ComponentSpec.parse(json.loads(json.dumps(spec.to_json()))) == spec


def test_network_failures_are_the_sdks_connection_error_retryable_as_requests_had_it(emulator):
    """tasks/stripe_http.py stands in for the SDK's RequestsClient: a refused connection
    may be tried again, a certificate that does not verify (here: TLS spoken to a plain
    HTTP server) may not (stripe/_http_client.py, RequestsClient._handle_request_error)."""
    import stripe

    from tasks.stripe_http import StripeHttpClient

    client = StripeHttpClient(timeout=2)
    with pytest.raises(stripe.APIConnectionError) as refused:
        client.request("get", f"http://127.0.0.1:{free_port()}/v1/customers", {})
    assert refused.value.should_retry
    with pytest.raises(stripe.APIConnectionError) as tls:
        client.request("get", emulator.url.replace("http://", "https://") + "/v1/customers", {})
    assert not tls.value.should_retry and "SSL" in str(tls.value)
    body, status, headers = client.request(
        "get", f"{emulator.url}/v1/customers/cus_missing", {"Authorization": f"Bearer {TEST_KEY}"}
    )
    assert status == 404 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert headers["request-id"] == headers["Request-Id"]  # looked up as the SDK does


def test_a_body_never_holds_a_name_the_sdk_takes_as_a_request_option():
    from worker.errors import SpecError

    for name in ("idempotency_key", "headers", "api_key", "stripe_account"):
        with pytest.raises(SpecError, match=f"Body.{name} is not a Stripe customer parameter"):
            ComponentSpec.parse(
                {"component": "stripe.createCustomer", "trigger": "t", "Body": {name: "x"}}
            )
