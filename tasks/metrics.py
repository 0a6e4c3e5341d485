"""The worker's Prometheus metrics, served by its main process on WORKER_METRICS_PORT.

Counted where they happen: tasks by outcome (tasks/customers.py), every HTTP call to
Stripe with its status and duration (the SDK's HTTP client, measured below), and the
wait for the shared rate limiter's slot. The figures that live in Redis (queue depth,
pending work, stream lengths and lags, live workers) are read from Redis when scraped,
by worker/status.py's constant-time snapshot, so every worker reports the same.

Under the threads pool (the default) the tasks run in the main process and these objects
are the figures. Under prefork they run in child processes: `prepare` then switches
prometheus-client to its multiprocess mode (files in PROMETHEUS_MULTIPROC_DIR, summed
when scraped), as the receiver does under gunicorn; tasks/launch.py sets it up before
this module is imported.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from tasks.stripe_http import StripeHttpClient
from worker import tracing
from worker.settings import Settings

log = logging.getLogger("stripe_worker.metrics")

TASKS = Counter(
    "stripe_worker_tasks", "Attempts of tasks by outcome", ["task", "outcome"], registry=None
)
STRIPE_CALLS = Counter(
    "stripe_worker_stripe_calls", "HTTP calls to Stripe", ["operation", "status"], registry=None
)
STRIPE_SECONDS = Histogram(
    "stripe_worker_stripe_call_seconds",
    "Time of one HTTP call to Stripe",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20),
    registry=None,
)
RATE_LIMIT_WAIT = Histogram(
    "stripe_worker_rate_limit_wait_seconds",
    "Time a Stripe call waited for its slot of the shared pace",
    buckets=(0, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30),
    registry=None,
)
RATE_LIMITED = Counter(
    "stripe_worker_stripe_rate_limited_total",
    "Stripe's 429s (not lock_timeout), by endpoint and the limiter that answered",
    ["endpoint", "limiter"],
    registry=None,
)
CATCHUP_RECOVERED = Counter(
    "stripe_worker_catchup_recovered",
    "Events catch-up found in Stripe's list that the receiver never got, and queued",
    registry=None,
)
OWN = (TASKS, STRIPE_CALLS, STRIPE_SECONDS, RATE_LIMIT_WAIT, RATE_LIMITED, CATCHUP_RECOVERED)


def task_done(task: str, outcome: str) -> None:
    """Count one attempt's outcome: published, retried or failed."""
    TASKS.labels(task, outcome).inc()


def rate_limit_waited(seconds: float) -> None:
    RATE_LIMIT_WAIT.observe(seconds)


def rate_limited_by(endpoint: str, limiter: str) -> None:
    """Count a 429 on `endpoint` from `limiter` (global, or the endpoint's own)."""
    RATE_LIMITED.labels(endpoint or "other", limiter).inc()


def catchup_recovered(count: int) -> None:
    CATCHUP_RECOVERED.inc(count)


def operation_of(method: str, url: str) -> str:
    """`POST /v1/customers` -> customers.create; `GET /v1/customers/cus_1` -> customers.retrieve."""
    parts = [p for p in urlsplit(url).path.split("/") if p][1:]  # without `v1`
    if not parts:
        return "other"
    verb = {"GET": "list", "POST": "create"}.get(method.upper(), method.lower())
    if len(parts) > 1:
        verb = {"GET": "retrieve", "POST": "update", "DELETE": "delete"}.get(method.upper(), verb)
    return f"{parts[0]}.{verb}"


class MeasuredHttpClient(StripeHttpClient):
    """The HTTP client under the SDK (tasks/stripe_http.py), counting and timing each call
    (network retries included)."""

    # RequestsClient's own signature (stripe/_http_client.py), which already differs from
    # its base HTTPClient's (no `_usage`, bytes for str): the SDK calls it this way.
    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        operation = operation_of(method, url)
        attributes = _call_attributes(method, url, operation) if tracing.enabled() else None
        with tracing.span(f"stripe {operation}", "client", attributes=attributes) as span:
            started = time.perf_counter()
            status = "network_error"
            try:
                answer = super().request(method, url, headers, post_data)
                status = str(answer[1])
                return answer
            finally:
                STRIPE_CALLS.labels(operation, status).inc()
                STRIPE_SECONDS.labels(operation).observe(time.perf_counter() - started)
                if span is not None and status != "network_error":
                    _annotate_answer(span, int(status), answer[2])


def _call_attributes(method: str, url: str, operation: str) -> dict[str, Any]:
    """A Stripe call's span attributes, by the HTTP client semantic conventions."""
    parts = urlsplit(url)
    return {
        "http.request.method": method.upper(),
        "server.address": parts.hostname,
        # Without the query: a list call's filters (an email) are not for the trace.
        "url.full": f"{parts.scheme}://{parts.netloc}{parts.path}",
        "stripe.operation": operation,
    }


def _annotate_answer(span: Any, status: int, headers: Any) -> None:
    """The HTTP semantic conventions' status; a 4xx or 5xx is the span's error."""
    tracing.annotate(
        span,
        **{
            "http.response.status_code": status,
            "stripe.request_id": (headers or {}).get("Request-Id"),
            "error.type": str(status) if status >= 400 else None,
        },
    )


class RedisFigures:
    """Gauges read from Redis at each scrape (worker/status.py's snapshot)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        from worker.status import snapshot

        up = GaugeMetricFamily("stripe_worker_redis_up", "Redis answered this scrape")
        try:
            s = snapshot(self.client, self.settings)
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, doc, value in (
            ("queue_depth", "Messages waiting on the Celery queue", s.queue_depth),
            ("held_messages", "Messages workers hold (running, reserved, retrying)", s.held),
            ("in_flight", "Tasks running now, as the workers' heartbeats say", s.in_flight),
            ("retries_waiting", "Retries waiting their countdown in workers", s.retries_waiting),
            ("pending_work", "Accepted work not yet published or failed", s.pending),
            (
                "oldest_pending_seconds",
                "Age of the oldest pending work (0: none)",
                s.oldest_pending_seconds or 0,
            ),
            (
                "live_workers",
                "Workers whose heartbeat is current and whose consumer is connected",
                s.live_workers,
            ),
            (
                "workers_not_consuming",
                "Workers whose heartbeat is current and says their consumer is down",
                s.workers_not_consuming,
            ),
        ):
            yield GaugeMetricFamily(f"stripe_worker_{name}", doc, value=value)
        entries = GaugeMetricFamily(
            "stripe_worker_stream_entries", "Entries in each stream", labels=["stream"]
        )
        lag = GaugeMetricFamily(
            "stripe_worker_stream_lag",
            "Entries not yet delivered to a consumer group",
            labels=["stream", "group"],
        )
        for stream, info in s.streams.items():
            entries.add_metric([stream], info.entries)
            for group, figures in info.groups.items():
                if figures["lag"] is not None:
                    lag.add_metric([stream, group], figures["lag"])
        pace = _by_mode(
            "stripe_worker_stripe_pace", "Calls/s the shared Stripe pace allows now", s.pace
        )
        endpoint_pace = GaugeMetricFamily(
            "stripe_worker_stripe_endpoint_pace",
            "Calls/s the shared pace of each Stripe endpoint allows now, by key mode",
            labels=["mode", "endpoint"],
        )
        for mode, paces in s.endpoint_pace.items():
            for endpoint, rate in paces.items():
                endpoint_pace.add_metric([mode, endpoint], rate)
        in_flight_cap = _by_mode(
            "stripe_worker_stripe_in_flight_cap",
            "Stripe calls each key may have in flight at once now (its concurrency cap)",
            s.in_flight_cap,
        )
        cursor_age = GaugeMetricFamily(
            "stripe_worker_catchup_cursor_age_seconds",
            "Seconds since the newest moment catch-up has listed Stripe's events up to, by "
            "account (platform: the key's own)",
            labels=["account"],
        )
        # Only where catch-up is on: turned off, its cursor stays in Redis and would age.
        on = s.catchup is not None and self.settings.catchup == "on"
        for account, age in (s.catchup.cursor_ages if on and s.catchup else {}).items():
            cursor_age.add_metric([account or "platform"], age)
        yield entries
        yield lag
        yield pace
        yield endpoint_pace
        yield cursor_age
        yield in_flight_cap


def _by_mode(name: str, doc: str, values: dict[str, float]) -> GaugeMetricFamily:
    """A gauge of one value per key mode."""
    gauge = GaugeMetricFamily(name, f"{doc}, by key mode", labels=["mode"])
    for mode, value in values.items():
        gauge.add_metric([mode], value)
    return gauge


def registry(client: redis.Redis, settings: Settings) -> CollectorRegistry:
    """What a scrape reads: this process's counts (or every pool process's), and Redis's."""
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(reg)
    else:
        for metric in OWN:
            reg.register(metric)
    reg.register(RedisFigures(client, settings))
    return reg


def serve(settings: Settings) -> Any:
    """Serve /metrics on WORKER_METRICS_HOST:WORKER_METRICS_PORT; None when the port is 0
    or taken (the worker runs on: the metrics are not worth stopping the work for)."""
    if not settings.worker_metrics_port:
        return None
    from prometheus_client import start_http_server

    from worker.connections import redis_client

    try:
        server, _thread = start_http_server(
            settings.worker_metrics_port,
            settings.worker_metrics_host,
            registry(redis_client(settings, socket_timeout=2), settings),
        )
    except OSError as exc:
        log.warning(
            "worker metrics not served: %s:%d: %s (set WORKER_METRICS_PORT to a free port)",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
            exc.strerror,
        )
        return None
    log.info(
        "metrics on http://%s:%d/metrics",
        settings.worker_metrics_host,
        settings.worker_metrics_port,
    )
    return server
