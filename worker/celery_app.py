"""The Celery app, made from Settings at start-up, and the clients its tasks share.

Tasks reach their clients through `app.runtime` (see `Runtime`), never through globals,
so a test or `stripe-worker dev` can run several apps with their own settings.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from celery import Celery

from worker.components import StripeGateway
from worker.settings import Settings
from worker.vault import Vault

QUEUE = "celery"
TASKS = {
    "create_customer": "stripe_worker.create_customer",
    "get_customer": "stripe_worker.get_customer",
    "handle_stripe_event": "stripe_worker.handle_stripe_event",
}


class Runtime:
    """Settings, vault, Redis and Stripe clients of one process; made on first use."""

    def __init__(self, settings: Settings, vault: Vault | None = None) -> None:
        self.settings = settings
        self.vault = vault or Vault.from_settings(settings)
        self._redis: redis.Redis | None = None
        self._gateway: StripeGateway | None = None
        self._lock = threading.Lock()

    @property
    def redis(self) -> redis.Redis:
        with self._lock:
            if self._redis is None:
                self._redis = redis_client(self.settings)
            return self._redis

    @property
    def gateway(self) -> StripeGateway:
        with self._lock:
            if self._gateway is None:
                limiter = None
                if self.settings.stripe_rate_limit > 0:
                    from worker.ratelimit import StripeRateLimiter

                    limiter = StripeRateLimiter(self._redis or redis_client(self.settings),
                                                self.settings.key("ratelimit"),
                                                self.settings.stripe_rate_limit)
                self._gateway = StripeGateway(self.settings, self.vault, limiter=limiter)
            return self._gateway


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    options.setdefault("socket_connect_timeout", 2)
    options.setdefault("socket_timeout", 5)
    options.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(settings.redis_url, **options)


def broker_options(settings: Settings) -> dict[str, Any]:
    """kombu's Redis transport options; every key it writes goes under STREAM_PREFIX."""
    return {
        "global_keyprefix": settings.key("q") + ":",
        "visibility_timeout": settings.visibility_timeout,
        # Messages of a killed worker come back within a few seconds of the timeout.
        "unacked_restore_interval": min(10, max(1, settings.visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": 2,
    }


def queue_key(settings: Settings) -> str:
    """The Redis list kombu reads the task queue from."""
    return broker_options(settings)["global_keyprefix"] + QUEUE


def create_celery(settings: Settings, vault: Vault | None = None) -> Celery:
    """A Celery app on the Redis at REDIS_URL, with the tasks of `tasks/` registered."""
    app = Celery("stripe_worker", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=QUEUE,
        # A task is acked after it ran, and put back if its worker dies mid-way; the
        # idempotency key and publish-once mark make the second run harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1, settings.task_time_limit - 10),
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        worker_concurrency=settings.worker_concurrency,
        worker_pool=settings.worker_pool,
        # Celery 6's default: a task whose broker connection is lost is cancelled and
        # redelivered; the idempotency key and publish-once mark make that harmless.
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    app.runtime = Runtime(settings, vault)  # type: ignore[attr-defined]
    from tasks import customers

    customers.register(app)
    return app
