"""The emulator's state: customers per key mode, idempotency records, keys, faults, counters."""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, TypedDict

from worker.devtools.emulator.events import EventLog
from worker.devtools.emulator.faults import FAULT_TYPES, Faults
from worker.devtools.emulator.form import (
    ApiError,
    apply_fields,
    key_from_header,
    list_limit,
    new_id,
    no_such_customer,
    unknown_parameter,
    validate_customer_params,
)
from worker.devtools.emulator.forward import Forwarder
from worker.devtools.emulator.ratelimit import (
    CONCURRENCY_LIMIT,
    ENDPOINT_LIMIT,
    REASONS,
    ModeBuckets,
    parse_limits,
)
from worker.devtools.emulator.ratelimit import MESSAGE as RATE_LIMIT_MESSAGE

IDEMPOTENCY_TTL = 24 * 3600
_KEY_SHAPE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]{8,247}$")


@dataclass
class Stored:
    fingerprint: str
    status: int
    body: bytes
    request_id: str
    at: float


def rate_limited(limiter: str) -> ApiError:
    """Stripe's 429 for a request over a limit: its body, no Retry-After, and the limiter
    named in Stripe-Rate-Limited-Reason."""
    headers = {"Stripe-Rate-Limited-Reason": REASONS[limiter]}
    return ApiError(429, "invalid_request_error", RATE_LIMIT_MESSAGE, "rate_limit", headers=headers)


class Stats(TypedDict):
    """What /_emulator/stats reports (beside the customers' count), by mode where keyed."""

    requests: int
    faults: int
    replays: int
    created: dict[str, int]
    rate_limited: dict[str, int]
    rate_limited_by: dict[str, int]  # which limiter refused: global, endpoint, concurrency
    most_active: dict[str, int]  # the most requests in flight at once


class EmulatorState:
    """Customers, idempotency records, keys, faults and counters; thread-safe."""

    def __init__(self, allowed_keys: set[str] | None = None, rng: random.Random | None = None):
        self.lock = threading.Lock()
        self._started_with = frozenset(allowed_keys or ())
        self.rng = rng or random.Random()
        self.forwarder: Forwarder | None = None  # kept across resets
        self.reset()

    def reset(self) -> None:
        # Requests still sleeping (latency, hangs) from before a reset must not land after it.
        self.generation = getattr(self, "generation", 0) + 1
        self.customers: dict[str, OrderedDict[str, dict[str, Any]]] = {
            "test": OrderedDict(),
            "live": OrderedDict(),
        }
        # Connected accounts' customers, by (mode, account): Stripe-Account scopes them.
        self.connected: dict[tuple[str, str], OrderedDict[str, dict[str, Any]]] = {}
        self.events = EventLog()
        self.idempotency: dict[tuple[str, str, str], Stored] = {}
        self.in_flight: set[tuple[str, str, str]] = set()
        self.revoked: set[str] = set()
        # Keys allowed since start (`/_emulator/keys` allow) are forgotten too: else every
        # key but those is refused after a reset.
        self.allowed_keys = set(self._started_with)
        self.faults = Faults()
        self.active = {"test": 0, "live": 0}  # requests being answered now, per key mode
        self.stats: Stats = {
            "requests": 0,
            "faults": 0,
            "replays": 0,
            "created": {"test": 0, "live": 0},
            "rate_limited": {"test": 0, "live": 0},
            "rate_limited_by": {"global": 0, "endpoint": 0, "concurrency": 0},  # which refused
            "most_active": {"test": 0, "live": 0},  # the most requests in flight at once
        }

    # -- faults ---------------------------------------------------------------------------

    def set_faults(self, spec: dict[str, Any]) -> None:
        with self.lock:
            for name, value in spec.items():
                convert = FAULT_TYPES.get(name)
                if convert is None:
                    raise ApiError(400, "invalid_request_error", f"unknown fault {name!r}")
                setattr(self.faults, name, None if value is None else convert(value))
                if name == "rate_limit":  # full buckets: one second's worth of requests
                    # "stripe": the global limits, Stripe's 25/s per endpoint and its
                    # concurrency limiter too (a "concurrency" of the same spec wins)
                    per_endpoint = ENDPOINT_LIMIT if value == "stripe" else 0.0
                    self.faults._buckets = ModeBuckets(parse_limits(value), per_endpoint)
                    if "concurrency" not in spec:
                        self.faults.concurrency = CONCURRENCY_LIMIT if value == "stripe" else 0

    def enter_call(self, mode: str) -> None:
        """A request of `mode` begins; a 429 from the concurrency limiter when `mode` has
        its limit in flight. Every call that returns is paired with `leave_call`."""
        with self.lock:
            limit = self.faults.concurrency
            if limit and self.active[mode] >= limit:
                self.stats["faults"] += 1
                self._refused(mode, "concurrency")
                raise rate_limited("concurrency")
            self.active[mode] += 1
            most = self.stats["most_active"]
            most[mode] = max(most[mode], self.active[mode])

    def leave_call(self, mode: str) -> None:
        with self.lock:  # never under 0: a reset may have come between
            self.active[mode] = max(0, self.active[mode] - 1)

    def _refused(self, mode: str, limiter: str) -> None:
        self.stats["rate_limited"][mode] += 1
        self.stats["rate_limited_by"][limiter] += 1

    def fault_for_request(
        self, mode: str, endpoint: str = "", account: str = ""
    ) -> tuple[ApiError | None, float]:
        """(an error to answer instead, seconds to wait before answering)."""
        with self.lock:
            f = self.faults
            delay = f.latency_ms / 1000.0
            refused = f._buckets.take(mode, endpoint, account)
            if refused:
                self.stats["faults"] += 1
                self._refused(mode, refused)
                return rate_limited(refused), 0.0
            if f.hang_count > 0:
                f.hang_count -= 1
                self.stats["faults"] += 1
                delay += f.hang_seconds
            inject = False
            if f.count > 0:
                f.count -= 1
                inject = True
            elif f.rate > 0 and self.rng.random() < f.rate:
                inject = True
            if not inject:
                return None, delay
            self.stats["faults"] += 1
            headers = {"Stripe-Should-Retry": f.should_retry} if f.should_retry else {}
            status = self.rng.choice(f.status) if isinstance(f.status, list) else f.status
            if status == 429:
                err = ApiError(
                    429,
                    "invalid_request_error",
                    "This object cannot be accessed right now because another API "
                    "request or Stripe process is currently accessing it.",
                    "lock_timeout",
                    headers=headers,
                )
            else:
                err = ApiError(
                    status,
                    "api_error",
                    "An unknown error occurred (injected by the emulator).",
                    headers=headers,
                )
            return err, delay

    # -- auth -----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> str:
        """The key's mode, or a 401 in Stripe's shape."""
        key = key_from_header(authorization)
        if not key:
            raise ApiError(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key "
                "in the Authorization header, using Bearer auth (e.g. "
                "'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:]
        match = _KEY_SHAPE.match(key)
        with self.lock:
            known = (not self.allowed_keys or key in self.allowed_keys) and key not in self.revoked
        if not match or not known:
            raise ApiError(401, "invalid_request_error", f"Invalid API Key provided: {masked}")
        return match.group(2)

    def manage_keys(self, spec: dict[str, Any]) -> None:
        with self.lock:
            self.revoked.update(spec.get("revoke", []))
            self.allowed_keys.update(spec.get("allow", []))
            self.revoked.difference_update(spec.get("allow", []))

    # -- idempotency ----------------------------------------------------------------------

    def idempotent_begin(self, slot: tuple[str, str, str], fingerprint: str) -> Stored | None:
        """A stored answer to replay, or None after marking the key in flight."""
        with self.lock:
            now = time.time()
            stored = self.idempotency.get(slot)
            if stored and now - stored.at > IDEMPOTENCY_TTL:
                del self.idempotency[slot]
                stored = None
            if stored:
                if stored.fingerprint != fingerprint:
                    raise ApiError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with. Try using a key other than "
                        f"'{slot[2]}' if you meant to execute a different request.",
                        "idempotency_key_in_use",
                    )
                self.stats["replays"] += 1
                return stored
            if slot in self.in_flight:
                raise ApiError(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Idempotent "
                    f"Key (that probably means you submitted twice, and the other request is "
                    f"still going through): {slot[2]}. Please try again later.",
                    "idempotency_key_in_use",
                )
            self.in_flight.add(slot)
            return None

    def idempotent_end(self, slot: tuple[str, str, str], stored: Stored | None) -> None:
        with self.lock:
            self.in_flight.discard(slot)
            if stored is not None:
                self.idempotency[slot] = stored

    # -- customers ------------------------------------------------------------------------

    def book(self, mode: str, account: str = "") -> OrderedDict[str, dict[str, Any]]:
        """The customers of the platform (account "") or of a connected account; locked."""
        if not account:
            return self.customers[mode]
        return self.connected.setdefault((mode, account), OrderedDict())

    def _event(self, mode: str, account: str, event_type: str, obj: dict[str, Any]) -> None:
        """What Stripe does after a change: an event about the object (locked), delivered
        when an endpoint is set (`forward_to`)."""
        event = self.events.record(mode, account, event_type, obj, request_id=new_id("req_"))
        if self.forwarder is not None:  # its JSON now: the object may change after
            self.forwarder.deliver(event["id"], json.dumps(event))

    def forward_to(self, url: str, secret: str) -> Forwarder:
        """Deliver each event made from now on to `url`, signed with `secret`
        (worker/devtools/emulator/forward.py); stop the returned Forwarder to end it."""

        def delivered(event_id: str) -> None:
            with self.lock:
                self.events.mark_delivered({event_id})

        self.forwarder = Forwarder(url, secret, delivered)
        return self.forwarder

    def create_customer(
        self, mode: str, params: dict[str, Any], account: str = ""
    ) -> dict[str, Any]:
        fields = validate_customer_params(params)
        customer: dict[str, Any] = {
            "id": new_id("cus_"),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": int(time.time()),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": None,
            "email": None,
            "invoice_prefix": "".join(secrets.choice("0123456789ABCDEF") for _ in range(8)),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": mode == "live",
            "metadata": {},
            "name": None,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        apply_fields(customer, fields)
        with self.lock:
            self.book(mode, account)[customer["id"]] = customer
            self.stats["created"][mode] += 1
            self._event(mode, account, "customer.created", customer)
        return customer

    def get_customer(self, mode: str, customer_id: str, account: str = "") -> dict[str, Any]:
        with self.lock:
            customer = self.book(mode, account).get(customer_id)
        if customer is None:
            raise no_such_customer(customer_id)
        if customer.get("deleted"):
            return {"id": customer_id, "object": "customer", "deleted": True}
        return customer

    def update_customer(
        self, mode: str, customer_id: str, params: dict[str, Any], account: str = ""
    ) -> dict[str, Any]:
        fields = validate_customer_params(params)
        with self.lock:
            customer = self.book(mode, account).get(customer_id)
            if customer is None or customer.get("deleted"):
                raise no_such_customer(customer_id)
            apply_fields(customer, fields)
            self._event(mode, account, "customer.updated", customer)
            return customer

    def delete_customer(self, mode: str, customer_id: str, account: str = "") -> dict[str, Any]:
        with self.lock:
            customer = self.book(mode, account).get(customer_id)
            if customer is None or customer.get("deleted"):
                raise no_such_customer(customer_id)
            self._event(mode, account, "customer.deleted", customer)
            customer["deleted"] = True
        return {"id": customer_id, "object": "customer", "deleted": True}

    def list_events(self, mode: str, query: dict[str, Any], account: str = "") -> dict[str, Any]:
        with self.lock:
            return self.events.list(mode, account, query)

    def get_event(self, mode: str, event_id: str, account: str = "") -> dict[str, Any]:
        with self.lock:
            return self.events.retrieve(mode, account, event_id)

    def list_customers(self, mode: str, query: dict[str, Any], account: str = "") -> dict[str, Any]:
        unknown = set(query) - {
            "limit",
            "starting_after",
            "ending_before",
            "email",
            "expand",
            "created",
        }
        if unknown:
            name = sorted(unknown)[0]
            raise unknown_parameter(name)
        limit = list_limit(query)
        with self.lock:
            items = [c for c in reversed(self.book(mode, account).values()) if not c.get("deleted")]
        if "email" in query:
            items = [c for c in items if c.get("email") == query["email"]]
        for cursor, after in (("starting_after", True), ("ending_before", False)):
            if cursor in query:
                ids = [c["id"] for c in items]
                if query[cursor] not in ids:
                    raise no_such_customer(query[cursor], param=cursor)
                at = ids.index(query[cursor])
                items = items[at + 1 :] if after else items[:at][-limit:]
        return {
            "object": "list",
            "data": items[:limit],
            "has_more": len(items) > limit,
            "url": "/v1/customers",
        }
