"""Keys and webhook secrets the tests use, and signatures made by the official libraries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

TEST_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
LIVE_KEY = "sk_live_51HxYzTestOnlyNotARealKey00"
STRIPE_WEBHOOK_SECRET = "whsec_test_stripe_endpoint_secret_0001"
# Standard Webhooks secrets are base64 after the prefix.
SIGNUP_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def sign_stripe(
    payload: bytes | str, secret: str = STRIPE_WEBHOOK_SECRET, timestamp: int | None = None
) -> str:
    """A Stripe-Signature header made by the official SDK (by hand for bytes not UTF-8)."""
    import stripe

    if isinstance(payload, bytes):
        try:
            payload = payload.decode()
        except UnicodeDecodeError:
            stamp = int(time.time()) if timestamp is None else timestamp
            mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
            return f"t={stamp},v1={mac.hexdigest()}"
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)


def sign_standard(
    payload: bytes | str,
    msg_id: str = "msg_1",
    secret: str = SIGNUP_WEBHOOK_SECRET,
    timestamp: float | None = None,
    prefix: str = "webhook",
) -> dict[str, str]:
    """Standard Webhooks headers made by the `standardwebhooks` library (by hand for bytes
    that are not UTF-8, which the library cannot sign)."""
    from standardwebhooks.webhooks import Webhook

    stamp = int(time.time() if timestamp is None else timestamp)
    if isinstance(payload, bytes):
        try:
            payload = payload.decode()
        except UnicodeDecodeError:
            key = base64.b64decode(secret.removeprefix("whsec_"))
            mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + payload, hashlib.sha256)
            signature = "v1," + base64.b64encode(mac.digest()).decode()
            return {
                f"{prefix}-id": msg_id,
                f"{prefix}-timestamp": str(stamp),
                f"{prefix}-signature": signature,
            }
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), payload)
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(stamp),
        f"{prefix}-signature": signature,
    }


# Every header the receiver reads to verify a webhook (Stripe's, Standard Webhooks' and the
# svix- spelling), for the property test and the fuzz run to send at random.
HEADER_NAMES = [
    "Stripe-Signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "Content-Type",
]


def signature_like_values() -> list:
    """Hypothesis strategies for values shaped like those headers' (Stripe's `t=...,v1=...`,
    a Standard Webhooks `v1,...`, a timestamp of now), for the property test and the fuzz
    run to send beside free text."""
    from hypothesis import strategies as st

    return [
        st.builds(
            lambda t, v: f"t={t},v1={v}",
            st.integers(-(10**12), 10**13),
            st.text("0123456789abcdef", max_size=70),
        ),
        st.builds(
            lambda v: f"v1,{v}",
            st.text(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=60
            ),
        ),
        st.just(str(int(time.time()))),
    ]
