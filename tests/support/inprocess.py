"""The worker on a thread of the test process, for tests where a separate process adds
nothing: the same Celery app, tasks, crash recovery and catch-up as `stripe-worker worker`, on the
threads pool (its default), without the start-up of a new interpreter.

Tests that kill a worker or run the CLI keep real processes (processes.WorkerProcess).
"""

from __future__ import annotations

import os
import threading

from celery.contrib.testing.worker import TestWorkController
from celery.worker import state

from worker.settings import Settings
from worker.vault import Vault

from .processes import FAST_WORKER


class InProcessWorker:
    """One worker of `settings` (with FAST_WORKER's quick retries) on a daemon thread.

    One at a time: the pool's threads find the tasks through Celery's default app, which
    is process-wide (as Celery's own `start_worker` does), and so is the flag that stops
    it. Tests of several workers use processes. Stopping is Celery's warm shutdown, as on
    SIGTERM: tasks under way finish first.
    """

    _running: InProcessWorker | None = None

    def __init__(self, settings: Settings, vault: Vault, **changes: object) -> None:
        self.settings = settings.with_(**{**FAST_WORKER, **changes})
        self.settings.check()
        self.vault = vault
        self._thread: threading.Thread | None = None
        self.controller: TestWorkController | None = None

    def start(self, timeout: float = 30.0) -> InProcessWorker:
        from tasks import worker_app
        from tasks.catchup import install_catchup
        from tasks.recovery import install_recovery

        assert InProcessWorker._running is None, "one in-process worker at a time"
        app = worker_app(self.settings, self.vault)
        recovery = install_recovery(
            app,
            self.settings,
            {"pool": self.settings.worker_pool, "concurrency": self.settings.worker_concurrency},
        )
        install_catchup(app, self.settings, recovery.worker_id)
        app.set_default()  # what the pool's threads run tasks on
        # BRPOP for 0.1 s instead of 1 s: the loop sees the stop flag between two.
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "polling_interval": 0.1,
        }
        self.controller = TestWorkController(
            app=app,
            pool=self.settings.worker_pool,
            concurrency=self.settings.worker_concurrency,
            hostname=f"stripe-worker-test-{os.getpid()}-{id(self)}@localhost",
            loglevel="INFO",
            ready_callback=None,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._thread = threading.Thread(
            target=self.controller.start, name="in-process-worker", daemon=True
        )
        self._thread.start()
        InProcessWorker._running = self
        if not self.controller._on_started.wait(timeout):
            self.stop()
            raise AssertionError(f"the in-process worker did not start in {timeout}s")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        state.should_stop = 0  # what Celery's SIGTERM handler sets: a warm shutdown
        try:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise AssertionError(f"the in-process worker did not stop in {timeout}s")
        finally:
            state.should_stop = None
            self._thread = None
            InProcessWorker._running = None
