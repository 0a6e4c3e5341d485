"""Stripe's wire format for customers: form decoding, parameter checks, error JSON."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from typing import Any

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
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


def unknown_parameter(name: str) -> ApiError:
    """Stripe's answer to a parameter it does not know."""
    return ApiError(
        400,
        "invalid_request_error",
        f"Received unknown parameter: {name}",
        "parameter_unknown",
        name,
    )


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
    # The top level stays an object even when its names are all digits (`0=x`): Stripe
    # answers that with an unknown parameter, not as a list of parameters.
    return {k: _listify(v) for k, v in root.items()}


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}


def no_such_customer(customer_id: str, param: str = "id") -> ApiError:
    return ApiError(
        404,
        "invalid_request_error",
        f"No such customer: '{customer_id}'",
        "resource_missing",
        param,
    )


def list_limit(query: dict[str, Any]) -> int:
    """A list call's `limit`: 10 unless given, 1 to 100 (Stripe's pagination)."""
    limit = integer_param(query.get("limit", "10"), "limit")
    if not 1 <= limit <= 100:
        raise ApiError(
            400,
            "invalid_request_error",
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            "parameter_invalid_integer",
            "limit",
        )
    return limit


def integer_param(value: Any, param: str) -> int:
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


def validate_customer_params(params: dict[str, Any]) -> dict[str, Any]:
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
            fields[name] = integer_param(value, name)
        elif name == "metadata":
            fields[name] = validate_metadata(value)
        elif name == "address":
            fields[name] = validate_address(value, "address")
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
                "address": validate_address(value.get("address", {}), "shipping[address]"),
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
            raise unknown_parameter(name)
    return fields


def validate_metadata(value: Any) -> dict[str, Any]:
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


def validate_address(value: Any, param: str) -> dict[str, Any] | None:
    if value == "":
        return None
    if not isinstance(value, dict):
        raise ApiError(
            400, "invalid_request_error", "Invalid object", "parameter_invalid_object", param
        )
    for key in value:
        if key not in _ADDRESS_KEYS:
            raise unknown_parameter(f"{param}[{key}]")
    return {k: value.get(k) or None for k in sorted(_ADDRESS_KEYS)}


def apply_fields(customer: dict[str, Any], fields: dict[str, Any]) -> None:
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


def key_from_header(authorization: str | None) -> str | None:
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


_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 14) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))
