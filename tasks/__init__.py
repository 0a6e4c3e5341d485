"""What runs on the worker: the tasks, the components, the Stripe gateway, publishing."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

    from worker.settings import Settings
    from worker.vault import Vault


def worker_app(settings: Settings, vault: Vault | None = None) -> Celery:
    """The Celery app with the tasks registered and their clients at `app.runtime`."""
    # Imported here, not above: `stripe-worker worker` must choose prometheus-client's
    # mode (tasks/launch.py) before anything of the tasks imports it.
    from tasks.celery_app import create_celery
    from tasks.customers import register
    from tasks.runtime import Runtime
    from worker import tracing

    # Before the pool starts: threads share it; a prefork child gets the SDK's own
    # after-fork re-start of the export thread (and flushes on exit: tasks/launch.py).
    tracing.setup(settings, "stripe-worker-worker")
    app = create_celery(settings)
    # Celery's app has no typed place for it: set here, read by runtime_of (tasks/runtime.py).
    app.runtime = Runtime(settings, vault)  # type: ignore[attr-defined]
    register(app)
    # Every message is checked before its task runs; one that is not valid work is
    # quarantined on the error stream and acknowledged, and a full Redis is waited out
    # (tasks/consumer.py).
    app.conf.worker_consumer = "tasks.consumer:WorkConsumer"
    return app
