"""A local Stripe API for customers, faithful where the worker's correctness depends on it.

Speaks Stripe's v1 wire format (form-encoded bodies with `metadata[...]`, Stripe's
error JSON, `Request-Id`/`Stripe-Version`/`Idempotency-Key` headers), keeps state
per key mode, honours `Idempotency-Key` as Stripe does (replay with
`Idempotent-Replayed: true`, 400 `idempotency_error` on other parameters, 409 while
the first request is in flight, keys kept 24 h), and injects faults on request.

Admin routes (JSON), for tests and benchmarks:
  GET  /_emulator/stats    counters: customers created per mode, requests, faults,
                           rate_limited (429s of the rate limit, per mode)
  POST /_emulator/faults   {"status": 500|429|[500, 429], "count": N, "rate": p,
                            "should_retry": "true", "hang_count": N, "hang_seconds": s,
                            "latency_ms": ms, "rate_limit": "stripe"|req/s|
                            {"test": req/s, "live": req/s}}  ("stripe": 25 test, 100 live)
                           (fields omitted are left as they are)
  DELETE /_emulator/faults  clear every fault
  POST /_emulator/keys     {"revoke": [key, ...]} or {"allow": [key, ...]}
  POST /_emulator/reset    forget every customer, key, fault and counter
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import secrets
import string
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from worker.devtools.emulator.ratelimit import MESSAGE as RATE_LIMIT_MESSAGE
from worker.devtools.emulator.ratelimit import ModeBuckets, parse_limits

DEFAULT_PORT = 12111
DEFAULT_API_VERSION = "2020-08-27"
IDEMPOTENCY_TTL = 24 * 3600
_KEY_SHAPE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]{8,247}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ALNUM = string.ascii_letters + string.digits
_ADDRESS_KEYS = {"city", "country", "line1", "line2", "postal_code", "state"}
_STRING_PARAMS = {"email": 512, "name": 256, "description": 350, "phone": 20}
_INTEGER_PARAMS = {"balance", "next_invoice_sequence"}
# Real Stripe parameters the worker never uses: accepted and ignored, not refused as unknown.
_IGNORED_PARAMS = {
    "coupon",
    "promotion_code",
    "payment_method",
    "source",
    "tax",
    "tax_id_data",
    "test_clock",
    "invoice_settings",
    "cash_balance",
    "expand",
}


def _new_id(prefix: str, length: int = 14) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


class ApiError(Exception):
    """An answer in Stripe's error shape."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.body["code"] = code
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            self.body["param"] = param
        self.headers = headers or {}


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding to nested JSON: `metadata[a]=1&locales[0]=en`."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        head, _, rest = raw_key.partition("[")
        parts = [head] + (rest[:-1].split("][") if rest.endswith("]") else ([rest] if rest else []))
        if not head or any(p == "" and i < len(parts) - 1 for i, p in enumerate(parts)):
            raise ApiError(
                400,
                "invalid_request_error",
                f"Invalid parameter name: {raw_key}",
                "parameter_unknown",
                raw_key,
            )
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        last = parts[-1] if parts[-1] != "" else str(len(node))  # `expand[]=x` appends
        node[last] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}


@dataclass
class Faults:
    status: int | list[int] = 500  # a list: each fault picks one at random
    count: int = 0
    rate: float = 0.0
    should_retry: str | None = None
    hang_count: int = 0
    hang_seconds: float = 30.0
    latency_ms: float = 0.0
    rate_limit: Any = 0.0  # as set: "stripe", req/s for both modes, or per mode; 0 = none
    _buckets: ModeBuckets = field(default_factory=lambda: ModeBuckets({}))


def _statuses(value: Any) -> int | list[int]:
    return [int(v) for v in value] if isinstance(value, list) else int(value)


_FAULT_TYPES = {
    "status": _statuses,
    "count": int,
    "rate": float,
    "should_retry": str,
    "hang_count": int,
    "hang_seconds": float,
    "latency_ms": float,
    "rate_limit": lambda value: value,
}


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: bytes
    request_id: str
    at: float


class EmulatorState:
    """Customers, idempotency records, keys, faults and counters; thread-safe."""

    def __init__(self, allowed_keys: set[str] | None = None, rng: random.Random | None = None):
        self.lock = threading.Lock()
        self.allowed_keys = set(allowed_keys or ())
        self.rng = rng or random.Random()
        self.reset()

    def reset(self) -> None:
        # Requests still sleeping (latency, hangs) from before a reset must not land after it.
        self.generation = getattr(self, "generation", 0) + 1
        self.customers: dict[str, OrderedDict[str, dict[str, Any]]] = {
            "test": OrderedDict(),
            "live": OrderedDict(),
        }
        self.idempotency: dict[tuple[str, str, str], _Stored] = {}
        self.in_flight: set[tuple[str, str, str]] = set()
        self.revoked: set[str] = set()
        self.faults = Faults()
        self.stats = {
            "requests": 0,
            "faults": 0,
            "replays": 0,
            "created": {"test": 0, "live": 0},
            "rate_limited": {"test": 0, "live": 0},
        }

    # -- faults ---------------------------------------------------------------------------

    def set_faults(self, spec: dict[str, Any]) -> None:
        with self.lock:
            for name, value in spec.items():
                convert = _FAULT_TYPES.get(name)
                if convert is None:
                    raise ApiError(400, "invalid_request_error", f"unknown fault {name!r}")
                setattr(self.faults, name, None if value is None else convert(value))
                if name == "rate_limit":  # full buckets: one second's worth of requests
                    self.faults._buckets = ModeBuckets(parse_limits(value))

    def fault_for_request(self, mode: str) -> tuple[ApiError | None, float]:
        """(an error to answer instead, seconds to wait before answering)."""
        with self.lock:
            f = self.faults
            delay = f.latency_ms / 1000.0
            if not f._buckets.take(mode):
                self.stats["faults"] += 1
                self.stats["rate_limited"][mode] += 1
                return ApiError(429, "invalid_request_error", RATE_LIMIT_MESSAGE, "rate_limit"), 0.0
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
        key = _key_from_header(authorization)
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

    def idempotent_begin(self, slot: tuple[str, str, str], fingerprint: str) -> _Stored | None:
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

    def idempotent_end(self, slot: tuple[str, str, str], stored: _Stored | None) -> None:
        with self.lock:
            self.in_flight.discard(slot)
            if stored is not None:
                self.idempotency[slot] = stored

    # -- customers ------------------------------------------------------------------------

    def create_customer(self, mode: str, params: dict[str, Any]) -> dict[str, Any]:
        fields = _validate_customer_params(params)
        customer = {
            "id": _new_id("cus_"),
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
        _apply(customer, fields)
        with self.lock:
            self.customers[mode][customer["id"]] = customer
            self.stats["created"][mode] += 1
        return customer

    def get_customer(self, mode: str, customer_id: str) -> dict[str, Any]:
        with self.lock:
            customer = self.customers[mode].get(customer_id)
        if customer is None:
            raise _no_such_customer(customer_id)
        if customer.get("deleted"):
            return {"id": customer_id, "object": "customer", "deleted": True}
        return customer

    def update_customer(self, mode: str, customer_id: str, params: dict[str, Any]) -> dict:
        fields = _validate_customer_params(params)
        with self.lock:
            customer = self.customers[mode].get(customer_id)
            if customer is None or customer.get("deleted"):
                raise _no_such_customer(customer_id)
            _apply(customer, fields)
            return customer

    def delete_customer(self, mode: str, customer_id: str) -> dict[str, Any]:
        with self.lock:
            customer = self.customers[mode].get(customer_id)
            if customer is None or customer.get("deleted"):
                raise _no_such_customer(customer_id)
            customer["deleted"] = True
        return {"id": customer_id, "object": "customer", "deleted": True}

    def list_customers(self, mode: str, query: dict[str, Any]) -> dict[str, Any]:
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
            raise ApiError(
                400,
                "invalid_request_error",
                f"Received unknown parameter: {name}",
                "parameter_unknown",
                name,
            )
        limit = _integer(query.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise ApiError(
                400,
                "invalid_request_error",
                "This value must be greater than or equal to 1 and less than or equal to 100.",
                "parameter_invalid_integer",
                "limit",
            )
        with self.lock:
            items = [c for c in reversed(self.customers[mode].values()) if not c.get("deleted")]
        if "email" in query:
            items = [c for c in items if c.get("email") == query["email"]]
        for cursor, after in (("starting_after", True), ("ending_before", False)):
            if cursor in query:
                ids = [c["id"] for c in items]
                if query[cursor] not in ids:
                    raise _no_such_customer(query[cursor], param=cursor)
                at = ids.index(query[cursor])
                items = items[at + 1 :] if after else items[:at][-limit:]
        return {
            "object": "list",
            "data": items[:limit],
            "has_more": len(items) > limit,
            "url": "/v1/customers",
        }


def _no_such_customer(customer_id: str, param: str = "id") -> ApiError:
    return ApiError(
        404,
        "invalid_request_error",
        f"No such customer: '{customer_id}'",
        "resource_missing",
        param,
    )


def _integer(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(
            400,
            "invalid_request_error",
            f"Invalid integer: {value}",
            "parameter_invalid_integer",
            param,
        ) from None


def _validate_customer_params(params: dict[str, Any]) -> dict[str, Any]:
    """Check create/update parameters the way Stripe does; return the fields to apply."""
    fields: dict[str, Any] = {}
    for name, value in params.items():
        if name in _IGNORED_PARAMS:
            continue
        if name in _STRING_PARAMS:
            if not isinstance(value, str):
                raise ApiError(
                    400,
                    "invalid_request_error",
                    f"Invalid string: {value!r}",
                    "parameter_invalid_string",
                    name,
                )
            if len(value) > _STRING_PARAMS[name]:
                raise ApiError(
                    400,
                    "invalid_request_error",
                    f"Invalid string: must be at most {_STRING_PARAMS[name]} characters long",
                    "parameter_invalid_string_too_long",
                    name,
                )
            if name == "email" and value and not _EMAIL.match(value):
                raise ApiError(
                    400,
                    "invalid_request_error",
                    f"Invalid email address: {value}",
                    "email_invalid",
                    name,
                )
            fields[name] = value or None
        elif name in _INTEGER_PARAMS:
            fields[name] = _integer(value, name)
        elif name == "metadata":
            fields[name] = _validate_metadata(value)
        elif name == "address":
            fields[name] = _validate_address(value, "address")
        elif name == "shipping":
            if not isinstance(value, dict) or "name" not in value:
                raise ApiError(
                    400,
                    "invalid_request_error",
                    "Missing required param: shipping[name].",
                    "parameter_missing",
                    "shipping[name]",
                )
            fields[name] = {
                "address": _validate_address(value.get("address", {}), "shipping[address]"),
                "name": value["name"],
                "phone": value.get("phone"),
            }
        elif name == "preferred_locales":
            if value == "":
                value = []
            if not isinstance(value, list):
                raise ApiError(
                    400, "invalid_request_error", "Invalid array", "parameter_invalid_array", name
                )
            fields[name] = value
        elif name == "tax_exempt":
            if value not in ("", "none", "exempt", "reverse"):
                raise ApiError(
                    400,
                    "invalid_request_error",
                    "Invalid tax_exempt: must be one of none, exempt, or reverse",
                    "parameter_invalid_string",
                    name,
                )
            fields[name] = value or "none"
        elif name == "invoice_prefix":
            if not re.fullmatch(r"[A-Z0-9]{3,12}", str(value)):
                raise ApiError(
                    400,
                    "invalid_request_error",
                    "Invalid invoice_prefix",
                    "invoice_prefix_invalid",
                    name,
                )
            fields[name] = value
        else:
            raise ApiError(
                400,
                "invalid_request_error",
                f"Received unknown parameter: {name}",
                "parameter_unknown",
                name,
            )
    return fields


def _validate_metadata(value: Any) -> dict[str, Any]:
    if value == "":
        return {"__clear__": True}
    if not isinstance(value, dict):
        raise ApiError(
            400, "invalid_request_error", "Invalid object", "parameter_invalid_object", "metadata"
        )
    if len(value) > 50:
        raise ApiError(
            400,
            "invalid_request_error",
            "You can have at most 50 keys in metadata.",
            "parameter_invalid_object",
            "metadata",
        )
    for key, item in value.items():
        if not isinstance(item, str):
            raise ApiError(
                400,
                "invalid_request_error",
                "Invalid string: metadata values are strings",
                "parameter_invalid_string",
                f"metadata[{key}]",
            )
        if len(key) > 40:
            raise ApiError(
                400,
                "invalid_request_error",
                "Metadata keys can have up to 40 characters",
                "parameter_invalid_string",
                f"metadata[{key}]",
            )
        if len(item) > 500:
            raise ApiError(
                400,
                "invalid_request_error",
                "Metadata values can have up to 500 characters",
                "parameter_invalid_string",
                f"metadata[{key}]",
            )
    return value


def _validate_address(value: Any, param: str) -> dict[str, Any] | None:
    if value == "":
        return None
    if not isinstance(value, dict):
        raise ApiError(
            400, "invalid_request_error", "Invalid object", "parameter_invalid_object", param
        )
    for key in value:
        if key not in _ADDRESS_KEYS:
            raise ApiError(
                400,
                "invalid_request_error",
                f"Received unknown parameter: {param}[{key}]",
                "parameter_unknown",
                f"{param}[{key}]",
            )
    return {k: value.get(k) or None for k in sorted(_ADDRESS_KEYS)}


def _apply(customer: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name == "metadata":
            if value.pop("__clear__", False):
                customer["metadata"] = {}
            for key, item in value.items():
                if item == "":
                    customer["metadata"].pop(key, None)
                else:
                    customer["metadata"][key] = item
        else:
            customer[name] = value


def _key_from_header(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses its connections
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms
    # for the delayed ACK on every request.
    disable_nagle_algorithm = True
    server: EmulatorServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: requests are counted
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        state = self.server.state
        request_id = _new_id("req_")
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": self.headers.get("Stripe-Version") or DEFAULT_API_VERSION,
        }
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if len(raw) < length:  # the client died mid-request: like Stripe, do nothing
            self.close_connection = True
            return
        url = urlsplit(self.path)
        try:
            if url.path.startswith("/_emulator/"):
                status, body = self._admin(method, url.path, raw)
                return self._send(status, body, headers)
            idem_key = self.headers.get("Idempotency-Key")
            if idem_key:
                headers["Idempotency-Key"] = idem_key
            with state.lock:
                state.stats["requests"] += 1
            mode = state.authenticate(self.headers.get("Authorization"))
            fault, delay = state.fault_for_request(mode)
            if fault is not None:
                if delay:
                    self._sleep(delay)
                raise fault
            try:
                params = decode_form(
                    parse_qsl(
                        raw.decode("utf-8") if method != "GET" else url.query,
                        keep_blank_values=True,
                    )
                )
            except UnicodeDecodeError:
                raise ApiError(
                    400, "invalid_request_error", "Request body is not valid UTF-8"
                ) from None
            if not idem_key or method == "GET":
                if delay:
                    self._sleep(delay)
                status, body = self._route(mode, method, url.path, params)
                return self._send(status, body, headers)
            fingerprint = json.dumps([method, url.path, params], sort_keys=True)
            slot = (mode, url.path.split("/")[1], idem_key)
            stored = state.idempotent_begin(slot, fingerprint)
            if stored is not None:
                headers["Idempotent-Replayed"] = "true"
                headers["Original-Request"] = stored.request_id
                return self._send(stored.status, stored.body, headers)
            record = None
            try:
                if delay:
                    self._sleep(delay)
                try:
                    status, body = self._route(mode, method, url.path, params)
                except ApiError as exc:
                    # Stripe saves the result of any request that began executing.
                    status, body = exc.status, {"error": exc.body}
                encoded = json.dumps(body).encode()
                record = _Stored(fingerprint, status, encoded, request_id, time.time())
            finally:
                state.idempotent_end(slot, record)
            self._send(status, encoded, headers)
        except ApiError as exc:
            headers.update(exc.headers)
            self._send(exc.status, {"error": exc.body}, headers)

    def _sleep(self, delay: float) -> None:
        generation = self.server.state.generation
        time.sleep(delay)
        if self.server.state.generation != generation:
            raise ApiError(500, "api_error", "the emulator was reset during this request")

    def _route(self, mode: str, method: str, path: str, params: dict[str, Any]):
        state = self.server.state
        parts = path.rstrip("/").split("/")
        if parts[:3] == ["", "v1", "customers"]:
            if len(parts) == 3:
                if method == "POST":
                    return 200, state.create_customer(mode, params)
                if method == "GET":
                    return 200, state.list_customers(mode, params)
            elif len(parts) == 4 and parts[3]:
                if method == "GET":
                    params.pop("expand", None)
                    if params:
                        name = sorted(params)[0]
                        raise ApiError(
                            400,
                            "invalid_request_error",
                            f"Received unknown parameter: {name}",
                            "parameter_unknown",
                            name,
                        )
                    return 200, state.get_customer(mode, parts[3])
                if method == "POST":
                    return 200, state.update_customer(mode, parts[3], params)
                if method == "DELETE":
                    return 200, state.delete_customer(mode, parts[3])
        raise ApiError(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def _admin(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        state = self.server.state
        try:
            spec = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "invalid_request_error", "admin routes take JSON") from None
        if not isinstance(spec, dict):
            raise ApiError(400, "invalid_request_error", "admin routes take a JSON object")
        if path == "/_emulator/stats" and method == "GET":
            with state.lock:
                stats = json.loads(json.dumps(state.stats))
                stats["customers"] = {
                    m: sum(1 for c in cs.values() if not c.get("deleted"))
                    for m, cs in state.customers.items()
                }
            return 200, stats
        if path == "/_emulator/faults" and method == "POST":
            try:
                state.set_faults(spec)
            except (TypeError, ValueError) as exc:
                raise ApiError(400, "invalid_request_error", f"bad fault: {exc}") from None
            return 200, {"ok": True}
        if path == "/_emulator/faults" and method == "DELETE":
            with state.lock:
                state.faults = Faults()
            return 200, {"ok": True}
        if path == "/_emulator/keys" and method == "POST":
            state.manage_keys(spec)
            return 200, {"ok": True}
        if path == "/_emulator/reset" and method == "POST":
            with state.lock:
                state.reset()
            return 200, {"ok": True}
        raise ApiError(404, "invalid_request_error", f"no admin route {method} {path}")

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class EmulatorServer(ThreadingHTTPServer):
    """The emulator on a real socket, a thread per connection."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, state: EmulatorState | None = None
    ):
        self.state = state or EmulatorState()
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the client gave up (timed out, or was killed): nothing to report
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> EmulatorServer:
        """Serve from a background thread; returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="stripe-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
