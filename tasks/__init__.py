"""What runs on the worker: the tasks, the components, the Stripe gateway, publishing."""

from __future__ import annotations

from celery import Celery

from tasks.runtime import Runtime
from worker.celery_app import create_celery
from worker.settings import Settings
from worker.vault import Vault


def worker_app(settings: Settings, vault: Vault | None = None) -> Celery:
    """The Celery app with the tasks registered and their clients at `app.runtime`."""
    from tasks.customers import register

    app = create_celery(settings)
    app.runtime = Runtime(settings, vault)  # type: ignore[attr-defined]
    register(app)
    return app
