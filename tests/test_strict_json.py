"""The receiver's parsing step: strict JSON, one depth limit, one rule for lone surrogates."""

from __future__ import annotations

import json

import pytest

from webhooks.signup import signup_component
from webhooks.strict_json import MAX_DEPTH, parse, refuse_surrogates
from worker.errors import WebhookRejected

from .support import entries, post_signup, wait_for


def _strict(text: str) -> object:
    def refuse(name: str) -> object:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e999}',
        b'{"a": 99999999999999999999}',
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b"[" * 700 + b"]" * 700,
        b'{"a": "\xff"}',
    ],
)
def test_refused_as_invalid_json(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse(body)
    assert caught.value.error_type == "invalid_json"


def test_nesting_within_the_limit_parses() -> None:
    assert parse(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    assert parse(b'{"s": "[[[[\\"{{{"}') == {"s": '[[[["{{{'}


def test_lone_surrogate_in_an_id_is_refused_naming_the_field() -> None:
    event = parse(b'{"id": "evt_\\ud800", "type": "x"}')
    with pytest.raises(WebhookRejected) as caught:
        refuse_surrogates(event)
    assert "id" in caught.value.message


def _signup(data: dict) -> dict:
    found = signup_component({"type": "user.created", "data": {"user_id": "u1", **data}})
    assert found is not None
    return found[1].to_json()["Body"]


def test_a_name_with_a_lone_surrogate_becomes_u_fffd() -> None:
    body = _signup(parse(b'{"name": "Ann \\ud83d"}'))
    assert body["name"] == "Ann \ufffd"
    _strict(json.dumps(body))


@pytest.mark.parametrize(
    "data",
    [{"email": "a\ud800@x.io"}, {"metadata": {"k": "\udc00"}}],
)
def test_a_lone_surrogate_in_data_is_refused(data: dict) -> None:
    with pytest.raises(WebhookRejected):
        _signup(data)


def test_metadata_reaches_stripe_as_sent() -> None:
    meta = {"k" * 40: "v" * 500, "on": True, "n": 1.5, "i": 2}
    assert _signup({"metadata": meta})["metadata"] == {
        "k" * 40: "v" * 500,
        "on": "true",
        "n": "1.5",
        "i": "2",
        "user_id": "u1",
    }


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ({f"k{i}": "v" for i in range(50)}, "50 keys"),
        ({"k" * 41: "v"}, "40 characters"),
        ({"k": "v" * 501}, "500 characters"),
        ({"k": None}, "metadata.k"),
        ({"k": [1]}, "metadata.k"),
    ],
)
def test_metadata_over_stripes_limits_is_refused_naming_field_and_limit(
    metadata: dict, named: str
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        _signup({"metadata": metadata})
    assert named in caught.value.message


def test_stripes_refusal_names_its_param_in_the_error_entry(
    client, start_inprocess_worker, redis_client, settings, emulator
) -> None:
    # Stripe refuses a name over 256 characters with `param: name` in its error body
    # (https://docs.stripe.com/api/errors: "param: the parameter the error relates to");
    # the emulator answers the same (worker/devtools/emulator/form.py).
    body = json.dumps(
        {"type": "user.created", "data": {"user_id": "u_long", "name": "n" * 257}}
    ).encode()
    assert post_signup(client, body).status_code == 200
    start_inprocess_worker()
    [error] = wait_for(lambda: entries(redis_client, settings, "errors"))
    assert error["error_type"] == "invalid_request_error"
    assert "must be at most 256 characters" in error["error_message"]
    assert "(param: name)" in error["error_message"]
