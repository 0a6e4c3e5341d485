"""Webhook signatures: Stripe's `Stripe-Signature` and the Standard Webhooks scheme.

Each verifier goes headers, then timestamp window, then a constant-time compare of
every offered signature against every configured secret (several during a rotation).
Anything malformed is a WebhookRejected with a short reason, never another exception:
the `standardwebhooks` library raises ValueError or UnicodeDecodeError on garbled
headers or bodies and has a fixed tolerance, so we verify here and sign with it in tests.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from typing import Protocol

from worker.errors import WebhookRejected

SIGNATURE_ERROR = "signature_verification_error"
MAX_SIGNATURES = 32  # more than any rotation needs; bounds the work an attacker can ask for


def _timestamp(raw: str | None, tolerance: int, now: float | None) -> str:
    """`raw` as sent (the text that was signed), once it is a time within `tolerance`."""
    if not raw or not raw.isdigit() or len(raw) > 12:
        raise WebhookRejected(SIGNATURE_ERROR, "the signature timestamp is missing or malformed")
    stamp = int(raw)
    now = time.time() if now is None else now
    if stamp < now - tolerance:
        raise WebhookRejected(SIGNATURE_ERROR, "the signature timestamp is too old (replayed?)")
    if stamp > now + tolerance:
        raise WebhookRejected(SIGNATURE_ERROR, "the signature timestamp is in the future")
    return raw


def _matches(expected: list[bytes], offered: list[bytes]) -> bool:
    found = False
    for mac in expected:
        for candidate in offered:
            # No early exit: the time taken does not tell which secret or signature matched.
            found |= hmac.compare_digest(mac, candidate)
    return found


def verify_stripe_signature(
    payload: bytes,
    header: str | None,
    secrets: list[str],
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> None:
    """Check `Stripe-Signature: t=...,v1=...[,v1=...]` over the raw body (scheme v1)."""
    if not header:
        raise WebhookRejected(SIGNATURE_ERROR, "the Stripe-Signature header is missing")
    stamp: str | None = None
    offered: list[bytes] = []
    for item in header.split(",")[: MAX_SIGNATURES + 1]:
        name, _, value = item.strip().partition("=")
        if name == "t":
            stamp = value
        elif name == "v1":
            try:
                offered.append(bytes.fromhex(value))
            except ValueError:
                continue
    stamp = _timestamp(stamp, tolerance, now)
    if not offered:
        raise WebhookRejected(SIGNATURE_ERROR, "the Stripe-Signature header has no v1 signature")
    signed = stamp.encode() + b"." + payload
    expected = [hmac.digest(s.encode(), signed, "sha256") for s in secrets]
    if not _matches(expected, offered):
        raise WebhookRejected(
            SIGNATURE_ERROR, "no signature matches a configured stripe_webhook_secret"
        )


def _standard_key(secret: str) -> bytes:
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return secret.encode()  # not base64: some senders use the raw string as the key


class Headers(Protocol):
    """What the verifier reads headers through: a dict of lower-case names, or the
    receiver's view of the WSGI environ (webhooks/app.py EnvironHeaders)."""

    def get(self, name: str, /) -> str | None: ...


def standard_headers(headers: Headers) -> tuple[str | None, str | None, str | None]:
    """(id, timestamp, signature) from `webhook-*` headers, or Svix's `svix-*` names."""

    def get(name: str) -> str | None:
        return headers.get(f"webhook-{name}") or headers.get(f"svix-{name}")

    return get("id"), get("timestamp"), get("signature")


def verify_standard_signature(
    payload: bytes,
    headers: Headers,
    secrets: list[str],
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> str:
    """Check a Standard Webhooks signature (`v1,<base64>` ...); returns the webhook id."""
    msg_id, stamp, signature = standard_headers(headers)
    if not msg_id or not signature:
        raise WebhookRejected(
            SIGNATURE_ERROR, "the webhook-id or webhook-signature header is missing"
        )
    if len(msg_id) > 255:
        raise WebhookRejected(SIGNATURE_ERROR, "the webhook-id header is too long")
    _timestamp(stamp, tolerance, now)
    offered: list[bytes] = []
    for item in signature.split(" ")[:MAX_SIGNATURES]:
        version, _, value = item.partition(",")
        if version != "v1":
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not offered:
        raise WebhookRejected(SIGNATURE_ERROR, "the webhook-signature header has no v1 signature")
    signed = f"{msg_id}.{stamp}.".encode() + payload
    expected = [hmac.digest(_standard_key(s), signed, "sha256") for s in secrets]
    if not _matches(expected, offered):
        raise WebhookRejected(
            SIGNATURE_ERROR, "no signature matches a configured signup_webhook_secret"
        )
    return msg_id
