"""The receiver's Prometheus metrics: counters by route and outcome, a latency histogram."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    """Counters by route and outcome, and a latency histogram (multiprocess-safe)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stripe_worker_webhooks",
            "Webhook requests by outcome",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stripe_worker_webhook_seconds",
            "Webhook answer time",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # gunicorn: sum every worker's files
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
