"""The emulator's event log: the events its own API calls make, listed as `GET /v1/events`.

Modelled on Stripe's API reference, "List all events" (docs.stripe.com/api/events/list):
events of the last 30 days, newest first; `limit` 1-100 (default 10); `starting_after` /
`ending_before` an event id (the page after it, or the page just before it: the newer
events nearest it, still newest first, which is why auto-pagination with `ending_before`
walks in created order, as the guide "Process undelivered webhook events" says);
`created` an integer or `created[gt|gte|lt|lte]`; `type` (a `*` wildcard allowed) or
`types[]` (up to 20, not both); `delivery_success`. `GET /v1/events/{id}` retrieves one.

Each key mode and each connected account (the `Stripe-Account` header,
docs.stripe.com/connect/authentication) has its own log; a connected account's events
carry `account`, as Connect webhooks do. Each event counts one pending delivery
(`pending_webhooks` 1, `delivery_success` false) until it is marked delivered: by the
forwarder after a 2xx (forward.py, in `dev`), or by a test or `send`
(`POST /_emulator/events/delivered`).
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import time
from dataclasses import dataclass
from typing import Any

from worker.devtools.emulator.form import (
    ApiError,
    integer_param,
    list_limit,
    new_id,
    unknown_parameter,
)

RETENTION = 30 * 24 * 3600  # Stripe lists and retrieves events of the last 30 days
MAX_TYPES = 20
API_VERSION = "2020-08-27"
LIST_PARAMS = {"limit", "starting_after", "ending_before", "created", "type", "types",
               "delivery_success", "expand"}  # fmt: skip


@dataclass
class Logged:
    event: dict[str, Any]
    seq: int  # insertion order: events of one second keep it
    delivered: bool = False


def no_such_event(event_id: str, param: str = "id") -> ApiError:
    return ApiError(
        404, "invalid_request_error", f"No such event: '{event_id}'", "resource_missing", param
    )


class EventLog:
    """Events per (key mode, account); account "" is the platform's own. Not locked: the
    emulator's state holds its lock around every call."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, str], list[Logged]] = {}
        self._seq = itertools.count()

    def record(
        self,
        mode: str,
        account: str,
        event_type: str,
        obj: dict[str, Any],
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        created: int | None = None,
    ) -> dict[str, Any]:
        """Log the event `event_type` about `obj` (a copy, as it is now)."""
        event: dict[str, Any] = {
            "id": new_id("evt_", 24),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()) if created is None else int(created),
            "data": {"object": _copy(obj)},
            "livemode": mode == "live",
            "pending_webhooks": 1,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": event_type,
        }
        if account:
            event["account"] = account
        self.logs.setdefault((mode, account), []).append(Logged(event, next(self._seq)))
        return event

    def mark_delivered(self, event_ids: set[str]) -> int:
        marked = 0
        for logged in itertools.chain.from_iterable(self.logs.values()):
            if logged.event["id"] in event_ids:
                logged.delivered = True
                logged.event["pending_webhooks"] = 0
                marked += 1
        return marked

    def _newest_first(self, mode: str, account: str) -> list[Logged]:
        floor = time.time() - RETENTION
        kept = [e for e in self.logs.get((mode, account), []) if e.event["created"] >= floor]
        return sorted(kept, key=lambda e: (e.event["created"], e.seq), reverse=True)

    def retrieve(self, mode: str, account: str, event_id: str) -> dict[str, Any]:
        for logged in self._newest_first(mode, account):
            if logged.event["id"] == event_id:
                return _copy(logged.event)
        raise no_such_event(event_id)

    def list(self, mode: str, account: str, query: dict[str, Any]) -> dict[str, Any]:
        unknown = set(query) - LIST_PARAMS
        if unknown:
            raise unknown_parameter(sorted(unknown)[0])
        limit = list_limit(query)
        if "starting_after" in query and "ending_before" in query:
            raise ApiError(
                400,
                "invalid_request_error",
                "You may only specify one of these parameters: ending_before, starting_after.",
            )
        everything = self._newest_first(mode, account)
        items = [e for e in everything if _matches(e, query)]
        has_more = len(items) > limit
        for cursor, after in (("starting_after", True), ("ending_before", False)):
            if cursor not in query:
                continue
            anchor = next((e for e in everything if e.event["id"] == query[cursor]), None)
            if anchor is None:
                raise no_such_event(query[cursor], param=cursor)
            order = (anchor.event["created"], anchor.seq)
            if after:  # the events older than the anchor
                items = [e for e in items if (e.event["created"], e.seq) < order]
            else:  # the events newer than it; the page is the one nearest it
                items = [e for e in items if (e.event["created"], e.seq) > order]
            has_more = len(items) > limit
            if not after:
                items = items[-limit:]
        return {
            "object": "list",
            "data": [_copy(e.event) for e in items[:limit]],
            "has_more": has_more,
            "url": "/v1/events",
        }


def _matches(logged: Logged, query: dict[str, Any]) -> bool:
    event = logged.event
    created = query.get("created")
    if created is not None:
        bounds = created if isinstance(created, dict) else {"eq": created}
        for op, raw in bounds.items():
            if op not in ("gt", "gte", "lt", "lte", "eq"):
                raise unknown_parameter(f"created[{op}]")
            value = integer_param(raw, f"created[{op}]")
            at = event["created"]
            if not {"gt": at > value, "gte": at >= value, "lt": at < value,
                    "lte": at <= value, "eq": at == value}[op]:  # fmt: skip
                return False
    if "type" in query and "types" in query:
        raise ApiError(
            400, "invalid_request_error", "You may pass either `type` or `types`, but not both."
        )
    if "type" in query and not fnmatch.fnmatchcase(event["type"], str(query["type"])):
        return False
    if "types" in query:
        types = query["types"] if isinstance(query["types"], list) else [query["types"]]
        if len(types) > MAX_TYPES:
            raise ApiError(
                400,
                "invalid_request_error",
                f"You may pass up to {MAX_TYPES} event types.",
                "parameter_invalid_array",
                "types",
            )
        if event["type"] not in types:
            return False
    if "delivery_success" in query:
        wanted = str(query["delivery_success"]).lower()
        if wanted not in ("true", "false"):
            raise ApiError(
                400,
                "invalid_request_error",
                f"Invalid boolean: {query['delivery_success']}",
                "parameter_invalid_boolean",
                "delivery_success",
            )
        if logged.delivered != (wanted == "true"):
            return False
    return True


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(value)
