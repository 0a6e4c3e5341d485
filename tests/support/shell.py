"""The CLI as a user types it: a fresh shell's environment, a command run to its end, and
`stripe-worker dev` running in the background."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from .processes import clean_env, cli
from .waiting import wait_for


def fresh_env(tmp_path: Path, **values: object) -> dict[str, str]:
    """A new user's shell: none of the project's variables, no PORT, and a TMPDIR of its
    own, so the only `dev` found is one the test starts there."""
    env = clean_env(TMPDIR=tmp_path, **values)
    if "PORT" not in values:
        env.pop("PORT", None)
    return env


def run_command(
    *args: str, env: Mapping[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`stripe-worker ARGS` to its end: exit status, stdout and stderr."""
    return subprocess.run(
        cli(*args), env=dict(env), input=stdin, capture_output=True, text=True, timeout=timeout
    )


def start_dev(
    env: Mapping[str, str], tmp_path: Path, port: int
) -> tuple[subprocess.Popen, Callable[[], str]]:
    """`stripe-worker dev --port PORT` in its own process group, once it says ready; the
    process and a function returning its output so far."""
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cli("dev", "--port", str(port)),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text() -> str:
        return log_path.read_text(errors="replace")

    wait_for(lambda: "ready." in text() or proc.poll() is not None, timeout=60)
    assert proc.poll() is None, text()
    return proc, text


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
