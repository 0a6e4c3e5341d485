"""`stripe-worker worker`: the Celery worker, with crash recovery running beside it."""

from __future__ import annotations

import os

from worker.settings import Settings


def run_worker(
    settings: Settings, *, pool: str | None, concurrency: int | None, loglevel: str
) -> int:
    """Run the worker until stopped; Celery's exit status is the process's."""
    from tasks import worker_app
    from worker.logs import configure_logging
    from worker.recovery import install_recovery

    configure_logging(
        loglevel.upper(), "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"
    )
    app = worker_app(settings)
    install_recovery(app, settings)  # only processes that run tasks recover others' work
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--hostname=stripe-worker-{os.getpid()}@%h",
        f"--concurrency={concurrency or settings.pool_size}",
        f"--pool={pool or settings.worker_pool}",
        "--without-gossip",
        "--without-mingle",
    ]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
