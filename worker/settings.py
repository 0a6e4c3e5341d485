"""Settings: one explicit object, built from the environment when asked, never at import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stripe_worker_agent.redis_url import check_redis_url, is_sentinel_url
from worker.errors import SettingsError
from worker.keys import Keys
from worker.redact import redact_url

REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")


@dataclass(frozen=True)
class Settings:
    """Every knob of the project; see the configuration table in the README."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # With a sentinel:// REDIS_URL: the master set the sentinels watch (`sentinel monitor
    # <name> ...`), and the sentinels' own password when they have one (requirepass).
    redis_sentinel_master: str = ""
    redis_sentinel_password: str = field(default="", repr=False)
    # Answer 200 (and count a result as published) only once the write is on this many
    # replicas (WAIT, up to 1 s; else 503 / a retry). 0: as soon as the master has it, so a
    # failover can lose the last acknowledged writes. See "Running on more than one machine".
    redis_min_replicas: int = 0
    stripe_api_base: str = "https://api.stripe.com"
    stream_prefix: str = "stripe"
    stream_maxlen: int = 100_000
    # A consumer group that stops reading holds its stream's entries (nothing it has not
    # read is trimmed) up to this many; past it the oldest are dropped, counted and logged,
    # so one abandoned group cannot fill Redis and stop every other write. 0 = no limit.
    stream_hard_maxlen: int = 1_000_000
    secrets_dir: Path | None = None
    # Stripe signs with a 300 s tolerance by default; Standard Webhooks uses 5 minutes too.
    webhook_tolerance: int = 300
    # Stripe retries a webhook for up to 3 days, so a dedupe mark must outlive that.
    dedupe_ttl: int = 3 * 24 * 3600
    max_body_bytes: int = 1024 * 1024
    # Seconds a client has to send its request headers, and again its body: a sender that
    # trickles is cut then (a 1 MiB body needs about 100 KB/s; Stripe sends a few KB at once).
    read_timeout: float = 10.0
    stripe_timeout: float = 20.0
    # Retry schedule of temporary Stripe errors: base * 2**n, capped, with equal
    # jitter (half fixed, half random: tasks/retry_policy.py backoff).
    retry_max_attempts: int = 8
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    # How long the work id -> customer id memory and the published-once marks last; beyond
    # Stripe's 24 h idempotency window, so a replay a week later finds the first customer.
    customer_memory_ttl: int = 90 * 24 * 3600
    # Celery: a message a dead worker held comes back after this; above the longest retry
    # delay plus a task's time limit, or an ETA retry would be handed out twice.
    visibility_timeout: int = 300
    task_time_limit: int = 120
    # Crash recovery (tasks/recovery.py): each worker beats and renews the leases of the
    # messages it holds every interval; a worker silent for the lapse is dead and its
    # messages run elsewhere. Its work is back on the queue at most a lapse after the
    # death; a shorter lapse recovers sooner but treats a worker stalled that long (GC, a
    # paused VM) as dead. A longer interval beats less often and renews leases later.
    heartbeat_interval: float = 1.0
    heartbeat_lapse: float = 5.0
    # The work waits on Stripe (about 300 ms a call), so threads, not processes: Stripe's
    # live limit (100/s) at 300 ms a call needs about 30 calls in flight, plus the ones
    # waiting their turn in the pace; 64 threads sustain it in about 70 MB
    # (docs/benchmarks.md). 0: the pool's own default (`pool_size`). Threads have no hard
    # time limit; STRIPE_TIMEOUT and Redis's socket timeouts bound each task instead.
    worker_concurrency: int = 0
    worker_pool: str = "threads"
    # Calls per second to Stripe per API key, across all workers (paced in Redis, slowed
    # by 429s). Unset: Stripe's limit for the key's mode less 3% (24.25/s test, 97/s live);
    # 0: no pace.
    stripe_rate_limit: float | None = None
    # Stripe's limit per endpoint (docs.stripe.com/rate-limits: 25 requests/s unless a page
    # says otherwise), paced beside the global one. Unset: 24.25/s; 0: endpoints unpaced.
    stripe_endpoint_rate: float | None = None
    # Endpoints whose limit Stripe raised for the account: "customers.create=50,...".
    stripe_endpoint_rates: str = ""
    # Stripe calls in flight at once per API key, across all workers: Stripe's concurrency
    # limiter, which its page names without a figure; 20 is the example of Stripe's post
    # on its limiters (stripe.com/blog/rate-limiters). 0: no cap.
    stripe_concurrency: int = 20
    # How long a piece of work's trail (worker/trail.py) and its search terms are kept:
    # as long as a delivery's dedupe mark, so "did it arrive?" is answered while the sender
    # may still be retrying it.
    trail_ttl: int = 3 * 24 * 3600
    # Catch-up (tasks/catchup.py): with a Stripe key and a webhook secret, one worker at a
    # time lists Stripe's new events every interval and queues those the receiver never
    # got, as a delivery would. "off" turns it off. CATCHUP_TYPES narrows it to the types
    # the endpoint subscribes to (comma separated, up to 20: Stripe's `types[]`); empty:
    # every type, as the receiver queues. CATCHUP_ACCOUNTS: connected accounts whose
    # events it lists too (a Connect endpoint's).
    catchup: str = "on"
    catchup_interval: float = 60.0
    catchup_types: str = ""
    catchup_accounts: str = ""
    # The worker's Prometheus endpoint (tasks/metrics.py); port 0 serves none.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9191
    # Traces (worker/tracing.py), by OpenTelemetry's standard variables: with an endpoint set
    # both processes export spans over OTLP/HTTP (the `otel` extra); unset, nothing of
    # OpenTelemetry is imported. The SDK reads the others (OTEL_SERVICE_NAME, ..._SAMPLER).
    otel_exporter_otlp_endpoint: str = ""
    otel_exporter_otlp_traces_endpoint: str = ""
    otel_exporter_otlp_protocol: str = ""
    otel_exporter_otlp_traces_protocol: str = ""
    otel_traces_exporter: str = ""
    otel_sdk_disabled: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read the variables of the configuration table; unknown ones are ignored."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # each as its field's type says (_convert)
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, f.type)
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse combinations that would break a promise, with the variable to change."""
        # Without a scheme, Celery would read REDIS_URL as an AMQP host and retry forever.
        if urlsplit(self.redis_url).scheme not in REDIS_SCHEMES:
            raise SettingsError(
                f"REDIS_URL must start with {', '.join(s + '://' for s in REDIS_SCHEMES)}; "
                f"got {_shown(self.redis_url)!r} (for example redis://127.0.0.1:6379/0)"
            )
        try:
            check_redis_url(self.redis_url)
        except ValueError as exc:
            raise SettingsError(f"REDIS_URL: {exc}") from None
        if self.secrets_dir is not None and not self.secrets_dir.is_dir():
            # Else every secret would be "not configured: set SECRETS_DIR/name or NAME",
            # pointing at a file in a folder that is not there.
            raise SettingsError(
                f"SECRETS_DIR {self.secrets_dir} is not a folder (it does not exist): mount "
                "or create it, or unset SECRETS_DIR to read secrets from the environment"
            )
        if is_sentinel_url(self.redis_url) and not self.redis_sentinel_master:
            raise SettingsError(
                "REDIS_URL is a sentinel:// URL: set REDIS_SENTINEL_MASTER to the name of the "
                "master set (sentinel monitor <name> ...)"
            )
        if self.visibility_timeout <= self.retry_max_delay + self.task_time_limit:
            raise SettingsError(
                "VISIBILITY_TIMEOUT must exceed RETRY_MAX_DELAY + TASK_TIME_LIMIT, or a task "
                "waiting to retry is handed to a second worker"
            )
        if self.heartbeat_lapse < 2 * self.heartbeat_interval or self.heartbeat_interval <= 0:
            raise SettingsError(
                "HEARTBEAT_LAPSE must be at least twice HEARTBEAT_INTERVAL (and the interval "
                "above 0), or a live worker is taken for dead between two beats"
            )
        if self.stream_hard_maxlen and self.stream_hard_maxlen < self.stream_maxlen:
            raise SettingsError("STREAM_HARD_MAXLEN must be 0 (no limit) or at least STREAM_MAXLEN")
        if self.worker_pool not in ("prefork", "threads", "solo"):
            raise SettingsError("WORKER_POOL must be threads, prefork or solo")
        if self.stripe_concurrency < 0:
            raise SettingsError("STRIPE_CONCURRENCY must be 0 (no cap) or more")
        if self.catchup not in ("on", "off"):
            raise SettingsError("CATCHUP must be on or off")
        if self.catchup_interval < 1:
            raise SettingsError("CATCHUP_INTERVAL must be at least 1 second (CATCHUP=off stops it)")
        types = self.event_types
        if len(types) > 20 or any("*" in t or not t.strip() for t in types):
            raise SettingsError(
                "CATCHUP_TYPES: up to 20 event types, comma separated, without wildcards "
                "(Stripe's types[] filter)"
            )
        if any(not a.startswith("acct_") for a in self.connected_accounts):
            raise SettingsError(
                "CATCHUP_ACCOUNTS: connected account ids, acct_..., comma separated"
            )
        try:
            parse_endpoint_rates(self.stripe_endpoint_rates)
        except ValueError as exc:
            raise SettingsError(f"STRIPE_ENDPOINT_RATES: {exc}") from None
        self._check_tracing()

    def _check_tracing(self) -> None:
        # The spec's values (opentelemetry.io/docs/specs/otel/protocol/exporter and
        # .../configuration/sdk-environment-variables); we ship the HTTP/protobuf exporter.
        # Only checked when tracing is on: another program's variables are not ours to refuse.
        if not self.tracing:
            return
        exporters = {e.strip() for e in self.otel_traces_exporter.lower().split(",")} - {""}
        if not exporters <= {"otlp", "none"}:
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER must be otlp or none, got {self.otel_traces_exporter!r}"
            )
        for name in ("otel_exporter_otlp_traces_protocol", "otel_exporter_otlp_protocol"):
            value = getattr(self, name)
            if value and value != "http/protobuf":
                raise SettingsError(
                    f"{name.upper()} must be http/protobuf (the only OTLP transport "
                    f"stripe-worker ships), got {value!r}"
                )
            if value:
                break
        for name in ("otel_exporter_otlp_traces_endpoint", "otel_exporter_otlp_endpoint"):
            value = getattr(self, name)
            if value and urlsplit(value).scheme not in ("http", "https"):
                raise SettingsError(
                    f"{name.upper()} must be an http:// or https:// URL, got {_shown(value)!r}"
                )

    @property
    def pool_size(self) -> int:
        """WORKER_CONCURRENCY, or 64 threads, or one prefork process per core."""
        if self.worker_concurrency:
            return self.worker_concurrency
        return 64 if self.worker_pool == "threads" else (os.cpu_count() or 1)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def event_types(self) -> list[str]:
        """CATCHUP_TYPES as a list; empty: every type."""
        return [t.strip() for t in self.catchup_types.split(",") if t.strip()]

    @property
    def connected_accounts(self) -> list[str]:
        """CATCHUP_ACCOUNTS as a list."""
        return [a.strip() for a in self.catchup_accounts.split(",") if a.strip()]

    @property
    def tracing(self) -> bool:
        """Spans are exported: an OTLP endpoint is set, OTEL_TRACES_EXPORTER is not `none`
        and OTEL_SDK_DISABLED is not `true` (the spec's booleans: only "true", any case)."""
        return (
            bool(self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint)
            and "none" not in self.otel_traces_exporter.lower()
            and self.otel_sdk_disabled.strip().lower() != "true"
        )

    @property
    def otlp_traces_url(self) -> str:
        """Where spans go: the traces endpoint as given, else `<endpoint>/v1/traces`."""
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        return self.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"

    @cached_property
    def keys(self) -> Keys:
        """Every Redis key under STREAM_PREFIX (worker/keys.py)."""
        return Keys(self.stream_prefix)


def port_number(raw: str, name: str = "PORT") -> int:
    """A TCP port to listen on; SettingsError names the variable or option and the value."""
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"{name} must be a port number from 1 to 65535, got {raw!r}")
    return int(raw)


def env_port(environ: Mapping[str, str] | None = None) -> int | None:
    """PORT (the platform's, for `web` and `dev`), or None when unset; never a silent 8000."""
    raw = (os.environ if environ is None else environ).get("PORT", "").strip()
    return port_number(raw) if raw else None


def parse_endpoint_rates(value: str) -> dict[str, float]:
    """STRIPE_ENDPOINT_RATES as {endpoint: calls/s}; ValueError names a bad entry."""
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _sep, rate = (part.strip() for part in item.partition("="))
        try:
            rates[name] = float(rate) if name else -1.0
        except ValueError:
            rates[name] = -1.0
        if rates[name] < 0:
            raise ValueError(f"{item!r} is not endpoint=calls/s (for example customers.create=50)")
    return rates


def _shown(url: str) -> str:
    """A URL as an error may show it: nothing before an `@`, which may be a password."""
    if "://" in url or "@" not in url:
        return redact_url(url)
    return "***@" + url.rsplit("@", 1)[1]


def _convert(name: str, raw: str, type_name: object) -> object:
    kind = str(type_name)
    try:
        if kind == "int":
            whole = int(raw)
            if whole < 0:
                raise ValueError("must not be negative")
            return whole
        if kind in ("float", "float | None"):
            number = float(raw)
            if number < 0:
                raise ValueError("must not be negative")
            return number
    except ValueError as exc:
        raise SettingsError(f"{name.upper()} must be a non-negative number, got {raw!r}") from exc
    if kind.startswith("Path"):
        return Path(raw)
    return raw
