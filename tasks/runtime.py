"""The clients one worker process shares between its tasks, made on first use."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import redis

from tasks.full_redis import WaitingRedis
from tasks.publish import Publisher
from tasks.stripe_gateway import StripeGateway
from tasks.worker_state import WorkerState
from worker.connections import redis_client
from worker.settings import Settings
from worker.trail import Trail
from worker.vault import Vault

if TYPE_CHECKING:
    from celery import Celery


class Runtime:
    """Settings, vault, Redis, the publisher, the Stripe gateway and the worker's state.

    Tasks reach it through `runtime_of(app)`, never through globals, so a test or
    `stripe-worker dev` can run several apps with their own settings.
    """

    def __init__(self, settings: Settings, vault: Vault | None = None) -> None:
        self.settings = settings
        self.vault = vault or Vault.from_settings(settings)
        self.state = WorkerState()
        self._redis: redis.Redis | None = None
        self._publisher: Publisher | None = None
        self._gateway: StripeGateway | None = None
        self._trail: Trail | None = None
        self._lock = threading.Lock()

    @property
    def redis(self) -> redis.Redis:
        with self._lock:
            if self._redis is None:
                self._redis = redis_client(self.settings, client_class=WaitingRedis)
            return self._redis

    @property
    def publisher(self) -> Publisher:
        client = self.redis
        with self._lock:
            if self._publisher is None:
                self._publisher = Publisher(client, self.settings)
            return self._publisher

    @property
    def trail(self) -> Trail:
        client = self.redis
        with self._lock:
            if self._trail is None:
                self._trail = Trail(client, self.settings)
            return self._trail

    @property
    def gateway(self) -> StripeGateway:
        client = self.redis
        with self._lock:
            if self._gateway is None:
                self._gateway = StripeGateway(self.settings, self.vault, redis_client=client)
            return self._gateway


def runtime_of(app: Celery) -> Runtime:
    """The Runtime that worker_app (tasks/__init__.py) put on `app`: Celery has no typed
    place for it, so this is the one place that reads it."""
    runtime: Runtime = app.runtime  # type: ignore[attr-defined]
    return runtime
