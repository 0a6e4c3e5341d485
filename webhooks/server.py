"""`stripe-worker web`: the receiver under gunicorn, metrics summed across its processes."""

from __future__ import annotations

import os
import tempfile
from typing import Any


def serve(host: str, port: int, workers: int, threads: int) -> int:
    """Serve the receiver until stopped."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Read by prometheus_client when imported: set before anything imports it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="stripe-worker-prom-")
    from gunicorn.app.base import BaseApplication

    from worker.logs import configure_logging
    from worker.settings import Settings

    settings = Settings.from_env()
    configure_logging()

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            if threads > 1:  # gthread: a worker's threads overlap their Redis waits
                self.cfg.set("threads", threads)
            self.cfg.set("accesslog", None)  # our own line per request replaces it
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("child_exit", _mark_dead)

        def load(self):  # type: ignore[no-untyped-def]
            from webhooks.app import create_app

            return create_app(settings)

    Server().run()
    return 0


def _mark_dead(server: object, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
