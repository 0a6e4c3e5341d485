"""`stripe-worker check`: a config doctor, one OK/FAIL line per thing that must hold."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator

import redis

from worker.connections import redis_client
from worker.errors import SettingsError, StripeWorkerError
from worker.redact import redact_url
from worker.redis_problems import require_version, tls_problem
from worker.settings import Settings
from worker.vault import (
    SIGNUP_WEBHOOK_SECRET,
    STRIPE_SECRET_KEY,
    STRIPE_WEBHOOK_SECRET,
    Vault,
    key_mode,
)


def checks(settings: Settings, vault: Vault) -> Iterator[tuple[bool, str, str]]:
    """(ok, what, detail) for Redis, each secret, the key's mode and Stripe itself."""
    try:
        client = redis_client(settings, socket_timeout=2)
        client.ping()
        require_version(client, settings.redis_url)
        yield True, "redis", f"{redact_url(settings.redis_url)} answers"
        yield broker_check(settings)
        wanted = settings.redis_min_replicas
        if wanted:
            replicas = int(client.info("replication").get("connected_slaves", 0))
            yield (
                replicas >= wanted,
                "redis",
                f"{replicas} replica(s) connected; REDIS_MIN_REPLICAS={wanted}"
                + ("" if replicas >= wanted else ": every webhook would be answered 503"),
            )
    except SettingsError as exc:
        yield False, "redis", exc.message
    except (redis.RedisError, ValueError) as exc:
        yield (
            False,
            "redis",
            tls_problem(exc, settings.redis_url)
            or f"{redact_url(settings.redis_url)} does not answer ({exc.__class__.__name__})",
        )
    key = None
    try:
        key = vault.stripe_key()
        yield True, "key", f"stripe_secret_key is a {key_mode(key)} mode key"
    except StripeWorkerError as exc:
        yield False, "key", exc.message
    for name in (STRIPE_WEBHOOK_SECRET, SIGNUP_WEBHOOK_SECRET):
        try:
            values = vault.get_list(name)
        except StripeWorkerError as exc:
            yield False, "webhook", exc.message
            continue
        problems = [
            f"value {i} {problem}"
            for i, v in enumerate(values, 1)
            if (problem := _whsec_problem(name, v)) is not None
        ]
        if problems:
            yield False, "webhook", f"{name}: " + "; ".join(problems)
        else:
            yield True, "webhook", f"{name}: {len(values)} secret(s) of the right format"
    if settings.tracing:
        yield traces_check(settings)
    if key is not None:
        from tasks.stripe_gateway import StripeGateway

        # At the workers' pace: `check` run beside a busy worker must not cost it a 429.
        gateway = StripeGateway.best_effort(settings.with_(stripe_timeout=10.0), vault)
        try:
            gateway.call(STRIPE_SECRET_KEY, lambda c: c.v1.customers.list(params={"limit": 1}))
            yield True, "stripe", f"{settings.stripe_api_base} accepts the key (list customers)"
        except StripeWorkerError as exc:
            yield False, "stripe", exc.message


def broker_check(settings: Settings) -> tuple[bool, str, str]:
    """The broker as the worker reaches it: Celery's kombu connection, through
    tasks/transport.py with the worker's options (TLS included), not only redis-py."""
    from tasks.celery_app import create_celery

    app = create_celery(settings)
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
            # kombu types default_channel as the generic StdChannel; the Redis transport's
            # has the redis-py client (kombu/transport/redis.py, Channel.client).
            connection.default_channel.client.ping()  # type: ignore[attr-defined]
            tls = "TLS" if connection.ssl else "plaintext"
        return True, "broker", f"the worker's transport connects ({tls})"
    except Exception as exc:  # kombu wraps what redis-py raised: name it, never a traceback
        cause = exc.__cause__ or exc
        return (
            False,
            "broker",
            tls_problem(cause, settings.redis_url)
            or f"the worker's transport cannot connect ({cause.__class__.__name__})",
        )


def traces_check(settings: Settings) -> tuple[bool, str, str]:
    """The OTLP endpoint takes an empty export, which the OTLP spec says a server SHOULD
    answer with success (opentelemetry.io/docs/specs/otlp/, OTLP/HTTP), with the headers
    and certificate the SDK's exporter would send (OTEL_EXPORTER_OTLP_[TRACES_]HEADERS,
    ..._CERTIFICATE)."""
    import os

    import requests

    from worker import tracing

    url = settings.otlp_traces_url
    try:
        tracing.check(settings)
    except SettingsError as exc:
        return False, "traces", exc.message
    from opentelemetry.util.re import parse_env_headers

    env = os.environ
    raw_headers = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get(
        "OTEL_EXPORTER_OTLP_HEADERS", ""
    )
    headers = {**parse_env_headers(raw_headers, liberal=True)}
    headers["Content-Type"] = "application/x-protobuf"
    verify = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
        or env.get("OTEL_EXPORTER_OTLP_CERTIFICATE")
        or True
    )
    shown = redact_url(url)
    try:
        answer = requests.post(url, data=b"", headers=headers, timeout=5, verify=verify)
    except requests.RequestException as exc:
        return (
            False,
            "traces",
            f"{shown} does not answer ({exc.__class__.__name__}): spans are lost",
        )
    if not answer.ok:
        return False, "traces", f"{shown} answered {answer.status_code}: spans are lost"
    return True, "traces", f"{shown} accepts OTLP/HTTP spans"


def _whsec_problem(name: str, value: str) -> str | None:
    """What is wrong with one webhook secret, or None."""
    if not value.startswith("whsec_"):
        return "does not start with whsec_ (copy the whole signing secret)"
    if len(value) < 14:
        return f"is too short ({len(value)} characters) for a signing secret"
    if name == SIGNUP_WEBHOOK_SECRET:  # Standard Webhooks: base64 after the prefix
        raw = value[6:]
        try:  # padded as webhooks/verify.py decodes it
            base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            return (
                "is not valid base64 after whsec_ (a Standard Webhooks secret is whsec_ + base64)"
            )
    return None
