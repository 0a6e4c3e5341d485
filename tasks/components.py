"""Running the two Stripe components, stripe.createCustomer and stripe.getStripeCustomer.

`run_component` makes the component's one Stripe call through the official SDK and
returns the promised outputs; the spec was checked before (worker/spec.py). The call is
the SDK's `raw_request` (the same request, headers, retries and error classes as
`client.v1.customers.create`): the outputs are the answer's JSON, and building a
StripeObject from it, then parsing the body again, cost more than the call itself.
Its keyword arguments are the parameters and the request options together, so a Body
never holds an option's name (worker/spec.py refuses them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

import stripe

from tasks.stripe_gateway import SIGNUP_ENDPOINT, StripeGateway
from tasks.turn import Turn
from worker.errors import NotFound, from_stripe_error
from worker.spec import CREATE_CUSTOMER, GET_CUSTOMER, ComponentSpec


def run_component(
    spec: ComponentSpec,
    gateway: StripeGateway,
    *,
    idempotency_key: str | None = None,
    account: str = "",
    turn: Turn | None = None,
) -> dict[str, Any]:
    """Make the component's one Stripe call and return its outputs.

    `idempotency_key` (create only) overrides the spec's own; the caller derives it
    from the work so every attempt, duplicate and replay sends the same one. `account`
    (a Connect event's) makes the call as that connected account (Stripe-Account), whose
    objects the platform's own key cannot see (docs.stripe.com/connect/authentication).
    `turn`: the call's first turn, taken already (StripeGateway.turn).
    """
    as_account: dict[str, Any] = {"stripe_account": account} if account else {}
    if spec.component == CREATE_CUSTOMER:
        key = idempotency_key or spec.idempotency_key
        # The parameters and the options in one: raw_request takes the options' names out
        # (the spec's body never holds one: worker/spec.py). Stripe answers a field it does
        # not know with a 400.
        params: dict[str, Any] = {**spec.body, **as_account}
        if key:
            params["idempotency_key"] = key
        response = gateway.call(
            spec.api_secret,
            lambda client: client.raw_request("post", "/v1/customers", **params),
            endpoint=SIGNUP_ENDPOINT,
            account=account,
            turn=turn,
        )
    else:
        url = f"/v1/customers/{quote_plus(spec.customer_id or '')}"  # as the SDK's retrieve
        response = gateway.call(
            spec.api_secret,
            lambda client: client.raw_request("get", url, **as_account),
            endpoint="customers.retrieve",
            account=account,
        )
    data = response.data
    if not isinstance(data, dict):
        raise from_stripe_error(stripe.APIError("Stripe answered with something not an object"))
    if data.get("deleted"):
        raise NotFound(
            f"customer {spec.customer_id} has been deleted",
            http_status=404,
            request_id=response.request_id,
        )
    outputs: dict[str, Any] = {
        "customerId": data.get("id"),
        "Response": data,
        "Headers": dict(response.headers.items()),
    }
    if spec.component == GET_CUSTOMER:
        outputs = {
            "customerId": outputs["customerId"],
            "customerEmail": data.get("email"),
            "Response": outputs["Response"],
            "Headers": outputs["Headers"],
        }
    for name, path in spec.outputs.items():
        outputs[name] = resolve_path(outputs, path)
    return outputs


def resolve_path(outputs: Mapping[str, Any], path: str) -> Any:
    """Walk `Response.metadata.user_id` into the outputs; a missing step gives None."""
    value: Any = outputs
    for step in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value
