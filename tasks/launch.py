"""`stripe-worker worker`: the Celery worker, with crash recovery and its metrics beside it."""

from __future__ import annotations

import os

from worker.metrics_folder import multiprocess_folder
from worker.settings import Settings

# The strings click reads as true for a flag's environment variable (NO_COLOR here).
_CLICK_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})


def run_worker(
    settings: Settings, *, pool: str | None, concurrency: int | None, loglevel: str
) -> int:
    """Run the worker until stopped; Celery's exit status is the process's."""
    pool = pool or settings.worker_pool
    concurrency = concurrency or settings.pool_size
    # A prefork pool's tasks count in its children: into files the main process sums.
    with multiprocess_folder(pool == "prefork"):
        return _run(settings, pool, concurrency, loglevel)


def _run(settings: Settings, pool: str, concurrency: int, loglevel: str) -> int:
    from celery.signals import worker_process_init, worker_process_shutdown

    from tasks import metrics, worker_app
    from tasks.catchup import install_catchup
    from tasks.holding import hold_to_pace
    from tasks.recovery import install_recovery
    from tasks.runtime import runtime_of
    from worker import tracing
    from worker.connections import redis_client
    from worker.logs import configure_logging
    from worker.redis_problems import require_version

    configure_logging(
        loglevel.upper(), "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"
    )
    # Refused at start, in one line (stripe-worker's main names a TLS problem as such),
    # rather than Celery retrying forever against a Redis it can never use.
    require_version(redis_client(settings), settings.redis_url)
    app = worker_app(settings)
    rt = runtime_of(app)
    # Only processes that run tasks recover others' work.
    recovery = install_recovery(
        app,
        settings,
        {"pool": pool, "concurrency": concurrency},
        report=hold_to_pace(rt.gateway, concurrency, rt.state.hold_fewer),
    )
    install_catchup(app, settings, recovery.worker_id)  # when a key and a webhook secret are set
    server = metrics.serve(settings)
    if server is not None:
        # A prefork child is forked with the listening socket: it must not keep the port.
        worker_process_init.connect(lambda **_: server.socket.close(), weak=False)
    if pool == "prefork":
        # A pool child ends without running atexit, where the SDK would export what it holds.
        worker_process_shutdown.connect(lambda **_: tracing.flush(), weak=False)
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--hostname=stripe-worker-{os.getpid()}@%h",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        "--without-gossip",
        "--without-mingle",
    ]
    # Celery's own `worker` command, without the `celery` group around it: the group
    # imports every other subcommand (amqp, multi, shell and click_repl among them), 0.15 s
    # of CPU at each start, and all it gives a subcommand is this context
    # (celery/bin/celery.py `celery`: the app, NO_COLOR as its --no-color flag, --quiet).
    # `app.worker_main` drops the status the command exits with (an unrecoverable error is
    # 1); the click command returns it when not in standalone mode.
    from celery.bin.base import CLIContext
    from celery.bin.worker import worker as worker_command

    no_color = os.environ.get("NO_COLOR", "").strip().lower() in _CLICK_TRUE
    context = CLIContext(app=app, no_color=no_color, workdir=None, quiet=False)
    try:
        return int(
            worker_command.main(
                args=argv[1:], obj=context, prog_name="celery worker", standalone_mode=False
            )
            or 0
        )
    except SystemExit as exc:
        return int(exc.code or 0)
