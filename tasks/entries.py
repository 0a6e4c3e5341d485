"""What a result's stream entry holds, built from a component's outputs."""

from __future__ import annotations

from typing import Any


def customer_id_named_by(event: dict[str, Any]) -> str | None:
    """The customer an event names: the object itself, or its `customer` field."""
    obj = (event.get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        return None
    if obj.get("object") == "customer":
        found: Any = obj.get("id")
    else:
        found = obj.get("customer")
        if isinstance(found, dict):  # expanded
            found = found.get("id")
    return found if isinstance(found, str) and found else None


def connected_account(event: dict[str, Any]) -> str:
    """The connected account a Connect event came from (its `account`), else ""."""
    account = event.get("account")
    return account if isinstance(account, str) else ""


def result_entry(
    component: str,
    outputs: dict[str, Any],
    *,
    source: str,
    source_id: str,
    idempotency_key: str,
    livemode: bool | None,
    attempts: int,
) -> dict[str, Any]:
    """A result's stream entry: the outputs under their promised names, where the work
    came from, and any extra outputs the component asked for."""
    response = outputs.get("Response") or {}
    email = outputs.get("customerEmail", response.get("email") if response else None)
    entry = {
        "component": component,
        "customerId": outputs.get("customerId"),
        "customerEmail": email,
        "Response": response,
        "Headers": outputs.get("Headers") or {},
        "source": source,
        "source_id": source_id,
        "idempotency_key": idempotency_key,
        "livemode": livemode,
        "attempts": attempts,
    }
    extra = {
        k: v
        for k, v in outputs.items()
        if k not in ("customerId", "customerEmail", "Response", "Headers")
    }
    if extra:
        entry["outputs"] = extra
    return entry
