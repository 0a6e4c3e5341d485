"""A signup event becomes one stripe.createCustomer, keyed by the user id.

Recognised without configuration: the generic shape the README documents, Clerk's
`user.created`, and a Supabase database webhook on `auth.users` (INSERT).
"""

from __future__ import annotations

import json
from typing import Any

from webhooks.strict_json import display_text, refuse_surrogates
from worker.errors import SpecError, WebhookRejected
from worker.spec import CREATE_CUSTOMER, ComponentSpec
from worker.work import signup_idempotency_key

SIGNUP_TYPES = {"user.created", "user.signup", "signup"}
# Stripe's metadata limits (docs.stripe.com/metadata): up to 50 keys, key names up to 40
# characters, values up to 500 characters; values are strings. One key is our user_id.
_MAX_KEYS, _MAX_KEY_CHARS, _MAX_VALUE_CHARS = 50, 40, 500


def _refuse(field: str, why: str) -> WebhookRejected:
    return WebhookRejected("invalid_payload", f"{field} {why}")


def _metadata_value(key: str, value: Any) -> str:
    """A metadata value as Stripe stores it: strings as sent, numbers and booleans as their
    JSON text (`true`, `1.5`); null, lists and objects have no string form and are refused."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bool, int, float)):
        text = json.dumps(value)
    else:
        raise _refuse(f"metadata.{key}", "must be a string, number or boolean")
    if len(text) > _MAX_VALUE_CHARS:
        raise _refuse(f"metadata.{key}", f"is longer than Stripe's {_MAX_VALUE_CHARS} characters")
    return text


def _metadata(metadata: Any, user_id: str) -> dict[str, str]:
    """The metadata as sent plus user_id, or refused naming the field and Stripe's limit."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _refuse("metadata", "must be an object")
    if len(metadata) + 1 > _MAX_KEYS:
        raise _refuse(
            "metadata",
            f"has more than {_MAX_KEYS - 1} keys (Stripe allows {_MAX_KEYS} keys; one is user_id)",
        )
    meta = {}
    for key, value in metadata.items():
        if not 0 < len(key) <= _MAX_KEY_CHARS:
            raise _refuse(f"metadata key {key[:60]!r}", f"is not 1-{_MAX_KEY_CHARS} characters")
        meta[key] = _metadata_value(key, value)
    meta["user_id"] = user_id
    return meta


def _clerk(data: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    primary = data.get("primary_email_address_id")
    emails = [e for e in data.get("email_addresses") or [] if isinstance(e, dict)]
    chosen = next((e for e in emails if e.get("id") == primary), emails[0] if emails else {})
    name = " ".join(str(p) for p in (data.get("first_name"), data.get("last_name")) if p)
    return data.get("id"), chosen.get("email_address"), name or None, data.get("public_metadata")


def _fields(event: dict[str, Any]) -> tuple[Any, Any, Any, Any] | None:
    """(user id, email, name, metadata), or None for an event that is not a signup."""
    if event.get("type") == "INSERT" and isinstance(event.get("record"), dict):  # Supabase
        record = event["record"]
        meta = record.get("raw_user_meta_data") or {}
        name = meta.get("full_name") or meta.get("name") if isinstance(meta, dict) else None
        return record.get("id"), record.get("email"), name, None
    if event.get("type") not in SIGNUP_TYPES:
        return None
    data = event.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected("invalid_payload", "a signup event needs a data object")
    if "email_addresses" in data or ("id" in data and "user_id" not in data):  # Clerk
        return _clerk(data)
    return data.get("user_id"), data.get("email"), data.get("name"), data.get("metadata")


def signup_component(event: object) -> tuple[str, ComponentSpec] | None:
    """(user id, its Create Customer) for a signup event; None for other events."""
    if not isinstance(event, dict):
        raise WebhookRejected("invalid_payload", "a signup event must be a JSON object")
    fields = _fields(event)
    if fields is None:
        return None
    user_id, email, name, metadata = fields
    if not isinstance(user_id, str) or not user_id:
        raise WebhookRejected("invalid_payload", "the signup event has no user id")
    body: dict[str, Any] = {}
    if email is not None:
        body["email"] = email
    if name is not None:
        body["name"] = display_text(name)  # display text: a lone surrogate becomes U+FFFD
    body["metadata"] = _metadata(metadata, user_id)
    refuse_surrogates(body)  # ids, emails and metadata are data: refused, never altered
    spec = {
        "component": CREATE_CUSTOMER,
        "trigger": "signup",
        "Body": body,
        "idempotency_key": signup_idempotency_key(user_id),
    }
    try:
        return user_id, ComponentSpec.parse(spec)
    except SpecError as exc:
        raise WebhookRejected(
            "invalid_payload", f"the signup event is unusable: {exc.message}"
        ) from None
