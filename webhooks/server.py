"""`stripe-worker web`: the receiver under gunicorn, metrics summed across its processes.

gunicorn runs WEB_CONCURRENCY gevent workers (webhooks/http_worker.py), each holding up to
WEB_CONNECTIONS connections, with READ_TIMEOUT on request headers and on bodies; measured
against the former gthread set-up by bench/slow_clients.py.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

from worker.metrics_folder import multiprocess_folder


def serve(
    host: str,
    port: int,
    workers: int,
    connections: int = 1000,
    hooks: Mapping[str, Callable[..., None]] | None = None,
) -> int:
    """Serve the receiver until stopped. `hooks` are gunicorn's server hooks by their
    setting's name (`post_worker_init`, `worker_exit`): bench/receiver_profile.py samples
    a worker's CPU through them."""
    with multiprocess_folder():  # gunicorn's workers' metrics, summed
        return _run(host, port, workers, connections, hooks or {})


def _run(
    host: str, port: int, workers: int, connections: int, hooks: Mapping[str, Callable[..., None]]
) -> int:
    from gunicorn.app.base import BaseApplication

    from webhooks.readiness import warn_unconfigured
    from worker import tracing
    from worker.logs import configure_logging
    from worker.settings import Settings
    from worker.vault import Vault

    settings = Settings.from_env()
    # A missing `otel` extra refused here in one line; the tracer itself is made in each
    # worker process (create_app), after the fork.
    tracing.check(settings)
    configure_logging()
    # What a log record learns of where it was made, as the logging HOWTO's "Optimization"
    # section lists it, none of which a line of ours or gunicorn's shows: under gevent, a
    # request's greenlet would make a threading._DummyThread for its first record's
    # threadName (62 against 36 µs a record in a new greenlet, measured). The line per
    # request skips records (worker/logs.py info_line_writer); a warning per request, as
    # in a Redis outage, does not.
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no frame walk for the caller's file and line
    # Once, in the master, before gunicorn forks: each worker's create_app would repeat it.
    warn_unconfigured(Vault.from_settings(settings), logging.getLogger("stripe_worker.web"))
    _raise_open_files_limit(workers * connections + 64)
    # The receiver's modules (Flask, werkzeug, prometheus_client, ours) imported here, once,
    # so that each worker forks with them loaded and shares their pages: a worker's boot
    # took 0.28 s of CPU to import them (`python -X importtime`), at every start and every
    # respawn. The app itself is still made in each worker, after gevent's patching
    # (`load` below); none of these modules opens a socket or starts a thread on import.
    import webhooks.app  # noqa: F401

    class Server(BaseApplication):
        read_timeout = settings.read_timeout  # ReceiverWorker's header deadline

        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "webhooks.http_worker.ReceiverWorker")
            self.cfg.set("worker_connections", connections)
            # The wait for a keep-alive request runs under the same deadline as headers.
            self.cfg.set("keepalive", max(1, int(settings.read_timeout)))
            self.cfg.set("accesslog", None)  # our own line per request replaces it
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("child_exit", _mark_dead)
            self.cfg.set("post_worker_init", _say_ready)
            # gunicorn >= 25 opens ~/.gunicorn/gunicorn.ctl, one path for every server of
            # the user: a second `web` takes it over, and stopping either removes it.
            self.cfg.set("control_socket_disable", True)
            for name, hook in hooks.items():
                self.cfg.set(name, hook)

        # types-gunicorn's start_response takes no exc_info, which Flask's WSGI type asks
        # for (gunicorn's own start_response has it: gunicorn/http/wsgi.py).
        def load(self) -> Flask:  # type: ignore[override]
            from webhooks.app import create_app

            return create_app(settings)

    Server().run()
    return 0


def _say_ready(worker: Any) -> None:
    """After gunicorn's "Booting worker" (said at the fork), the line that says the worker
    now serves, and so stops gracefully on SIGTERM: until its own handlers are set, the
    master's inherited one swallows the signal, and the master kills it at graceful_timeout."""
    worker.log.info("Worker ready (pid: %s)", worker.pid)


def _raise_open_files_limit(wanted: int) -> None:
    """Each held connection is a file descriptor: raise the soft limit toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _mark_dead(server: object, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
