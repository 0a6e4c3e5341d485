"""The reaper: each worker queues again the recorded work whose message was lost.

See worker/queue.py for why a message can vanish. The reaper runs in a thread of the
worker's main process, every quarter of VISIBILITY_TIMEOUT; several workers reaping
at once can only queue a piece of work twice, which the idempotency key and the
publish-once mark make harmless.
"""

from __future__ import annotations

import logging
import threading

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

log = logging.getLogger("stripe_worker.reaper")


def reap_forever(app: Celery, stop: threading.Event) -> None:
    from worker.celery_app import redis_client
    from worker.queue import Enqueuer

    settings = app.runtime.settings  # type: ignore[attr-defined]
    enqueuer = Enqueuer(app, redis_client(settings), settings)
    interval = max(1.0, settings.visibility_timeout / 4)
    while not stop.wait(interval):
        try:
            enqueuer.requeue_stalled()
        except redis.RedisError as exc:  # Redis away: try again next round
            log.warning("reaper: %s", exc.__class__.__name__)


def install_reaper(app: Celery) -> None:
    """Start the reaper when a worker of `app` is ready; stop it when it shuts down."""
    stop = threading.Event()

    def on_ready(sender: object = None, **_: object) -> None:
        if getattr(sender, "app", None) is app:
            threading.Thread(target=reap_forever, args=(app, stop), name="reaper",
                             daemon=True).start()

    def on_shutdown(sender: object = None, **_: object) -> None:
        stop.set()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
