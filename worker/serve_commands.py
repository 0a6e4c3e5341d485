"""The commands behind `stripe-worker` that run until they are stopped: the worker, the
receiver, the emulator and `dev` (the one-off commands are in worker/commands.py)."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from worker.errors import SettingsError


def cmd_emulator(args: argparse.Namespace) -> int:
    """Serve the local Stripe API until interrupted."""
    from worker.devtools.emulator import EmulatorServer, EmulatorState

    state = EmulatorState(allowed_keys=set(args.key or ()))
    state.set_faults(
        {
            "latency_ms": args.latency_ms,
            "rate": args.fail_rate,
            "status": args.fail_status,
            "rate_limit": args.rate_limit,
        }
    )
    server = EmulatorServer(args.host, args.port, state)
    print(f"stripe emulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """The receiver under gunicorn."""
    from webhooks.server import serve
    from worker.settings import env_port

    port = args.port or env_port() or 8000
    _can_listen(args.host, port)
    return serve(args.host, port, args.workers, args.connections)


def _can_listen(host: str, port: int) -> None:
    """A port `web` cannot have is one line now, not gunicorn's five tries over 5 s."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            raise SettingsError(
                f"cannot listen on {host}:{port}: "
                + (
                    "another process has that port; stop it or choose another --port or PORT"
                    if taken
                    else (exc.strerror or exc.__class__.__name__)
                )
            ) from None


def cmd_worker(args: argparse.Namespace) -> int:
    """The Celery worker; its exit status is the process's."""
    from tasks.launch import run_worker
    from worker.logs import quiet_broker_reconnects
    from worker.settings import Settings

    quiet_broker_reconnects()
    if os.geteuid() == 0:
        # Celery's nine-line SecurityWarning is about accepting pickle as root; this worker
        # accepts JSON only (tasks/celery_app.py), so one line says what is still true.
        import warnings

        from celery.exceptions import SecurityWarning
        from celery.signals import worker_init

        warnings.filterwarnings("ignore", category=SecurityWarning)
        # Said once the worker starts: an error before that (Redis away) stays one line.
        worker_init.connect(
            lambda **_: print(
                "worker    running as root; it accepts JSON messages only, but a user of its "
                "own is safer (USER in a container image)",
                file=sys.stderr,
                flush=True,
            ),
            weak=False,
        )
    return run_worker(
        Settings.from_env(), pool=args.pool, concurrency=args.concurrency, loglevel=args.loglevel
    )


def cmd_dev(args: argparse.Namespace) -> int:
    """Everything in one process, on embedded defaults where nothing is configured."""
    from worker.devtools.dev import run_dev
    from worker.settings import env_port

    asked = args.port or env_port()  # asked for: refused when taken; 8000 moves if taken
    return run_dev(args.host, asked or 8000, args.concurrency, fixed_port=asked is not None)
