"""The two Stripe components, stripe.createCustomer and stripe.getStripeCustomer.

A component is JSON exactly as users write it. `ComponentSpec.parse` checks it
before any network call; `run_component` makes the one Stripe call through the
official SDK and returns the promised outputs.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe

from worker.errors import NotFound, SpecError, from_stripe_error
from worker.settings import Settings
from worker.vault import STRIPE_SECRET_KEY, Vault, livemode_of

CREATE_CUSTOMER = "stripe.createCustomer"
GET_CUSTOMER = "stripe.getStripeCustomer"
COMPONENTS = (CREATE_CUSTOMER, GET_CUSTOMER)

_KNOWN_KEYS = {
    CREATE_CUSTOMER: {"component", "trigger", "Body", "api_secret", "idempotency_key", "outputs"},
    GET_CUSTOMER: {"component", "customer_id", "api_secret", "outputs"},
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_MAX_DEPTH = 4  # Stripe's own parameters nest at most a few levels (shipping[address][city]).


@dataclass(frozen=True)
class ComponentSpec:
    """A validated component: what to call, with which named secret."""

    component: str
    api_secret: str = STRIPE_SECRET_KEY
    body: dict[str, Any] = field(default_factory=dict)
    customer_id: str | None = None
    idempotency_key: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    trigger: Any = None

    @classmethod
    def parse(cls, data: object) -> ComponentSpec:
        """Check a component's JSON (a dict, or text); SpecError says what is wrong."""
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise SpecError(f"the component is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SpecError("a component must be a JSON object")
        name = data.get("component")
        if name not in COMPONENTS:
            raise SpecError(
                f"unknown component {name!r}: expected one of {', '.join(COMPONENTS)}"
            )
        unknown = sorted(set(data) - _KNOWN_KEYS[name])
        if unknown:
            raise SpecError(f"{name} does not take the key(s) {', '.join(unknown)}")
        api_secret = data.get("api_secret", STRIPE_SECRET_KEY)
        if not isinstance(api_secret, str) or not api_secret:
            raise SpecError("api_secret must be the name of a secret, such as stripe_secret_key")
        outputs = _parse_outputs(data.get("outputs"))
        if name == CREATE_CUSTOMER:
            if "trigger" not in data:
                raise SpecError(f"{name} needs a trigger (any value)")
            body = data.get("Body", {})
            _check_body(body)
            key = data.get("idempotency_key")
            if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
                raise SpecError("idempotency_key must be a string of 1 to 255 characters")
            return cls(name, api_secret, body, None, key, outputs, data["trigger"])
        customer_id = data.get("customer_id")
        if customer_id is None or customer_id == "":
            raise SpecError(f"{name} needs a customer_id, such as cus_ABC123XYZ456")
        if not isinstance(customer_id, str) or not _CUSTOMER_ID.match(customer_id):
            raise SpecError("customer_id must be a Stripe id such as cus_ABC123XYZ456")
        return cls(name, api_secret, {}, customer_id, None, outputs)

    def to_json(self) -> dict[str, Any]:
        """The component as users write it: plain JSON for a queue message or a stream."""
        data: dict[str, Any] = {"component": self.component}
        if self.component == CREATE_CUSTOMER:
            data["trigger"] = self.trigger
            data["Body"] = self.body
            if self.idempotency_key is not None:
                data["idempotency_key"] = self.idempotency_key
        else:
            data["customer_id"] = self.customer_id
        if self.api_secret != STRIPE_SECRET_KEY:
            data["api_secret"] = self.api_secret
        if self.outputs:
            data["outputs"] = self.outputs
        return data


def _parse_outputs(raw: object) -> dict[str, str]:
    """`outputs` as {name: path}; a list of paths names each output by its path."""
    if raw is None:
        return {}
    if isinstance(raw, list):
        raw = {path: path for path in raw}
    if not isinstance(raw, dict):
        raise SpecError(
            'outputs must map names to paths, such as {"userId": "Response.metadata.user_id"}'
        )
    outputs: dict[str, str] = {}
    for name, path in raw.items():
        if not isinstance(path, str) or path.split(".")[0] not in ("Response", "Headers"):
            raise SpecError(f"output {name!r}: a path starts with Response. or Headers.")
        if not isinstance(name, str) or not (_OUTPUT_NAME.match(name) or name == path):
            raise SpecError(f"output name {name!r} is not a valid name")
        outputs[name] = path
    return outputs


def _check_body(body: object) -> None:
    if not isinstance(body, dict):
        raise SpecError("Body must be a JSON object of Stripe customer parameters")
    _check_value("Body", body, 0)
    email = body.get("email")
    if email is not None and (not isinstance(email, str) or not _EMAIL.match(email)):
        raise SpecError("Body.email is not an email address")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise SpecError("Body.metadata must be an object of string values")
        for key, value in metadata.items():
            if isinstance(value, (dict, list)):
                raise SpecError(f"Body.metadata.{key} must be a string, not an object or list")


def _check_value(path: str, value: object, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise SpecError(f"{path} nests too deeply for a Stripe parameter")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key or any(c in key for c in "[]"):
                raise SpecError(f"{path} has a key that is not a valid parameter name: {key!r}")
            _check_value(f"{path}.{key}", item, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(f"{path}[{i}]", item, depth + 1)
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise SpecError(f"{path} has a value that is not JSON")


class StripeGateway:
    """Stripe clients for the keys named by components, made once and reused (keep-alive)."""

    def __init__(self, settings: Settings, vault: Vault, *, max_network_retries: int = 0,
                 limiter: Any = None):
        self.settings = settings
        self.vault = vault
        self.max_network_retries = max_network_retries
        self.limiter = limiter  # a StripeRateLimiter shared by every worker, or None
        self._clients: dict[str, stripe.StripeClient] = {}
        self._lock = threading.Lock()

    def client(self, api_secret: str) -> stripe.StripeClient:
        key = self.vault.stripe_key(api_secret)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = stripe.StripeClient(
                    key,
                    base_addresses={"api": self.settings.stripe_api_base},
                    max_network_retries=self.max_network_retries,
                    http_client=stripe.RequestsClient(timeout=self.settings.stripe_timeout),
                )
                self._clients[key] = client
            return client

    def livemode(self, api_secret: str) -> bool:
        return livemode_of(self.vault.stripe_key(api_secret))


def run_component(
    spec: ComponentSpec, gateway: StripeGateway, *, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Make the component's one Stripe call and return its outputs.

    `idempotency_key` (create only) overrides the spec's own; the caller derives it
    from the work so every attempt, duplicate and replay sends the same one.
    """
    client = gateway.client(spec.api_secret)
    if gateway.limiter is not None:
        gateway.limiter.acquire()
    try:
        if spec.component == CREATE_CUSTOMER:
            key = idempotency_key or spec.idempotency_key
            options: dict[str, Any] = {"idempotency_key": key} if key else {}
            obj = client.v1.customers.create(params=spec.body, options=options)  # type: ignore[arg-type]
        else:
            obj = client.v1.customers.retrieve(spec.customer_id or "")
    except stripe.StripeError as exc:
        raise from_stripe_error(exc) from None
    response = obj.last_response
    assert response is not None
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
        "Response": json.loads(response.body),
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
