"""The project's processes as an operator starts them: each in its own process group,
its output in a log file, stopped with SIGTERM (or killed with SIGKILL) as a whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path

from worker.devtools.local import free_port
from worker.settings import Settings

from .waiting import http_answers, wait_for

# Variables the project reads: every setting, the secrets (STRIPE_*, SIGNUP_*), gunicorn's
# (WEB_*) and OpenTelemetry's (OTEL_*, read by its SDK too). A child starts without the
# caller's, so only what a test gives it counts.
PROJECT_VARIABLES = (
    *(f.name.upper() for f in fields(Settings)),
    "STRIPE",
    "SIGNUP",
    "WEB_",
    "OTEL_",
)

# Settings that keep a worker quick under test: short retries, a short visibility timeout.
FAST_WORKER = {
    "retry_base_delay": 0.1,
    "retry_max_delay": 0.4,
    "retry_max_attempts": 5,
    "stripe_timeout": 5,
    "task_time_limit": 10,
    "visibility_timeout": 12,
    "worker_concurrency": 4,
}


def clean_env(**values: object) -> dict[str, str]:
    """This process's environment without the project's variables, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PROJECT_VARIABLES)}
    env.update({k: str(v) for k, v in values.items()})
    return env


def worker_env(settings: Settings, env: Mapping[str, str], **extra: object) -> dict[str, str]:
    """The environment a process sees for `settings` and the secrets in `env`, with the
    FAST_WORKER settings; `extra` variables last."""
    child = clean_env(**env)
    child.update(
        REDIS_URL=settings.redis_url,
        STRIPE_API_BASE=settings.stripe_api_base,
        STREAM_PREFIX=settings.stream_prefix,
    )
    child.update({name.upper(): str(value) for name, value in FAST_WORKER.items()})
    child.update({k: str(v) for k, v in extra.items()})
    return child


def compile_project() -> None:
    """Write the project's bytecode once, before the run starts its processes. Where
    PYTHONDONTWRITEBYTECODE is set (this sandbox sets it, and every process the suite
    starts inherits it), each process would compile the project's modules anew: 0.25 s of
    CPU a worker process; the whole suite 316 s of CPU against 326 s, 191 s against 197 s."""
    import compileall

    root = Path(__file__).resolve().parents[2]
    for package in ("worker", "tasks", "webhooks", "stripe_worker_agent", "bench", "tests"):
        compileall.compile_dir(root / package, quiet=1)


def cli(*args: str) -> list[str]:
    """The command line of `stripe-worker ARGS` with the interpreter running the tests."""
    return [sys.executable, "-m", "worker", *args]


class Process:
    """A command in its own process group (so its children go with it), output to a log."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: str | Path,
        cwd: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = str(log_path)
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group: the process and its children die mid-way."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` (SIGTERM: stop gracefully) to the whole group; `stop` waits for it."""
        if self.alive():
            os.killpg(self.pid, sig)

    def stop(self, timeout: float = 20, sig: int = signal.SIGTERM) -> None:
        """Send `sig` (SIGTERM) to the whole group and wait; SIGKILL after `timeout` s."""
        self.terminate(sig)
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_for_line(self, text: str, count: int = 1, timeout: float = 90) -> None:
        """Until the log holds `text` `count` times; AssertionError with the log if the
        process ends first."""

        def said() -> bool:
            log = self.log()
            assert self.alive(), log
            return log.count(text) >= count

        wait_for(said, timeout=timeout, interval=0.1)

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


class WorkerProcess(Process):
    """`stripe-worker worker` as a real process: `start(*extra_args)`."""

    def __init__(self, env: Mapping[str, str], log_path: str | Path) -> None:
        super().__init__(cli("worker", "--loglevel=INFO"), env, log_path)

    def start(self, *extra: str) -> WorkerProcess:
        self.argv = [*cli("worker", "--loglevel=INFO"), *extra]
        super().start()
        return self

    def ready(self, timeout: float = 90) -> WorkerProcess:
        """Wait for Celery's last line at start (" ready."): a start on a loaded 2-core
        machine took 0.7-1.7 s here, and much longer under CI's load. Then a test's own
        bound counts what it measures, not the start."""
        self.wait_for_line(" ready.", timeout=timeout)
        return self


class WebProcess(Process):
    """`stripe-worker web` (gunicorn) on a free port (or `port`), started and answering
    /healthz when the constructor returns."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: str | Path,
        workers: int = 2,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["web", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        super().__init__(cli(*args), env, log_path)
        self.start()

    def start(self) -> WebProcess:
        super().start()

        def up() -> bool:
            assert self.alive(), self.log()
            return http_answers(self.url + "/healthz")

        wait_for(up, timeout=30, interval=0.1)
        # Every worker, not only the one that answered: one still booting when a test sends
        # SIGTERM would not stop gracefully (webhooks/server.py _say_ready).
        self.wait_for_line("Worker ready (pid:", self.workers, timeout=60)
        return self
