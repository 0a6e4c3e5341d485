"""A signup event becomes one stripe.createCustomer, keyed by the user id.

Recognised without configuration: the generic shape of INTERFACE.md, Clerk's
`user.created`, and a Supabase database webhook on `auth.users` (INSERT).
"""

from __future__ import annotations

from typing import Any

from worker.errors import SpecError, WebhookRejected
from worker.spec import CREATE_CUSTOMER, ComponentSpec
from worker.work import signup_idempotency_key

SIGNUP_TYPES = {"user.created", "user.signup", "signup"}
_MAX_METADATA = 49  # Stripe allows 50 keys; one is user_id


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
        body["name"] = name
    extra = metadata if isinstance(metadata, dict) else {}
    meta = {
        str(k)[:40]: str(v)[:500]
        for k, v in list(extra.items())[:_MAX_METADATA]
        if isinstance(v, (str, int, float, bool))
    }
    meta["user_id"] = user_id
    body["metadata"] = meta
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
