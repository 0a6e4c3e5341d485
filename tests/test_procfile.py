"""The Procfile's lines, started by hand as a process manager would, process an event."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .support import free_port, wait_for, worker_env

ROOT = Path(__file__).parent.parent


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and ":" in line)


def test_procfile_has_web_and_worker():
    assert set(procfile()) == {"web", "worker"}


@pytest.mark.slow
def test_procfile_lines_process_a_signup_end_to_end(
    settings, webhook_env, redis_client, tmp_path, emulator
):
    port = free_port()
    env = worker_env(settings, webhook_env, PORT=port, WEB_CONCURRENCY=1)
    # The console script lives beside the interpreter running the tests.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    procs = []
    try:
        for name, command in procfile().items():
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    ["bash", "-c", f"exec {command.strip()}"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        def up():
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(up, timeout=30)
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "worker",
                "send",
                "signup",
                "--email",
                "procfile@example.com",
                "--url",
                f"http://127.0.0.1:{port}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent
        wait_for(lambda: redis_client.xlen(settings.keys.stream("customers")) == 1, timeout=30)
        entry = redis_client.xrange(settings.keys.stream("customers"))[0][1]
        assert entry["customerEmail"] == "procfile@example.com"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
