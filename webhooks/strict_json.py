"""Strict JSON at the edge: what a receiver accepts is what every strict parser accepts.

One rule for each way a signed body can be valid for Python yet unusable downstream:
- nesting deeper than MAX_DEPTH is refused before anything recurses (dataclasses.asdict,
  json.dumps and our own walks all recurse);
- NaN, Infinity and numbers outside a double or an int64 are refused (RFC 8259 section 6
  has no NaN/Infinity; Stripe's integers are int64), so every stored field stays JSON;
- a lone surrogate (`"\\ud800"`, what a cut emoji becomes) cannot be UTF-8: `lone_surrogate`
  finds one, and `display_text` replaces them with U+FFFD where the field is display text.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from worker.errors import WebhookRejected

MAX_DEPTH = 64  # Stripe's events nest about ten deep; far beyond any real event
_INT64 = 2**63
_SURROGATE = re.compile("[\ud800-\udfff]")


def _invalid(reason: str) -> WebhookRejected:
    return WebhookRejected("invalid_json", f"the body is not strict UTF-8 JSON: {reason}")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")
# A \u escape of a UTF-16 surrogate (D800-DFFF). A body that decoded as strict UTF-8 holds
# no surrogate itself, so a parsed string can hold one only through such an escape.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _depth(text: str) -> int:
    """The deepest nesting of `text`, counted without recursing: strings dropped and brackets
    found by the regex engine, so only the brackets are counted in Python (a signed body is
    up to MAX_BODY_BYTES, and this runs on every delivery)."""
    steps = (1 if b in "[{" else -1 for b in _BRACKET.findall(_STRING.sub("", text)))
    return max(accumulate(steps), default=0)


def _constant(name: str) -> Any:
    raise _invalid(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _invalid(f"{text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    value = int(text)
    if not -_INT64 <= value < _INT64:
        raise _invalid(f"{text[:40]}... is out of range")
    return value


# Made once: json.loads with hooks builds a decoder (and its scanner) on every call.
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)


def parse(payload: bytes) -> Any:
    """The body as JSON, or WebhookRejected `invalid_json` saying why not."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("not UTF-8") from None
    # Fewer brackets than MAX_DEPTH, strings' included, cannot nest deeper: most bodies.
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise _invalid(f"it nests deeper than {MAX_DEPTH} levels")
    try:
        return _DECODER.decode(text)
    except ValueError:  # also int digits over Python's limit
        raise _invalid("not JSON") from None


def may_hold_surrogates(payload: bytes) -> bool:
    """False when no string parsed from `payload` can hold a lone surrogate (it escapes
    none): `refuse_surrogates` of what `parse` made of it would find nothing. True may be
    a pair, or an escaped backslash before `ud800`: then walk the value."""
    return _SURROGATE_ESCAPE.search(payload) is not None


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path of the first string (key or value) holding a lone surrogate, or None."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return where or "the body"
        elif isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    return f"{where}.{key!a}" if where else f"{key!a}"
                stack.append((f"{where}.{key}" if where else key, child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None


def refuse_surrogates(value: Any, path: str = "") -> None:
    """WebhookRejected naming the field when `value` holds a string that cannot be UTF-8."""
    where = lone_surrogate(value, path)
    if where is not None:
        raise WebhookRejected(
            "invalid_payload",
            f"{where} holds a lone surrogate (text that cannot be UTF-8)",
        )


def display_text(value: Any) -> Any:
    """A display string with lone surrogates replaced by U+FFFD; other values as they are."""
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value
