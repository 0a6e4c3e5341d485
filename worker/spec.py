"""A component as users write it: `ComponentSpec.parse` checks it before any network call.

The receiver, `run` and the tasks share this one parser; running a component is the
worker's (tasks/components.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from worker.errors import SpecError
from worker.vault import STRIPE_SECRET_KEY

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
            raise SpecError(f"unknown component {name!r}: expected one of {', '.join(COMPONENTS)}")
        unknown = sorted(set(data) - _KNOWN_KEYS[name])
        if unknown:
            raise SpecError(f"{name} does not take the key(s) {', '.join(unknown)}")
        api_secret = data.get("api_secret", STRIPE_SECRET_KEY)
        if not isinstance(api_secret, str) or not api_secret:
            raise SpecError("api_secret must be the name of a secret, such as stripe_secret_key")
        outputs = _parse_outputs(data.get("outputs"))
        if name == CREATE_CUSTOMER:
            if "trigger" not in data:
                raise SpecError(
                    f'{name} needs a "trigger" (any value, such as "true"): on the agent '
                    "platform it is the input that starts a create, so a spec without it "
                    'would never run there; add "trigger": "true"'
                )
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


# The names the SDK's raw_request takes as request options, not parameters
# (stripe/_request_options.py, _stripe_client.py); no customer parameter has one.
SDK_OPTION_NAMES = frozenset(
    {"api_key", "stripe_version", "stripe_account", "stripe_context", "max_network_retries",
     "idempotency_key", "content_type", "headers", "base", "usage"}
)  # fmt: skip


def _check_body(body: object) -> None:
    if not isinstance(body, dict):
        raise SpecError("Body must be a JSON object of Stripe customer parameters")
    options = sorted(SDK_OPTION_NAMES & set(body))
    if options:
        raise SpecError(f"Body.{options[0]} is not a Stripe customer parameter")
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
