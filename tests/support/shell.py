"""The CLI as a user types it: a fresh shell's environment, a command run to its end (in
a process of its own, or in this one), and `stripe-worker dev` running in the background."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
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


def run_in_process(
    *args: str, env: Mapping[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`stripe-worker ARGS` to its end through the command line's own `main`, in this
    process (as Flask's CliRunner does): what it prints and returns, as `run_command` has
    it, without the 0.2-0.6 s of CPU a new interpreter costs. For a command that reads and
    answers (a usage mistake, a setting refused, tail, dlq, run, check, status, send);
    `env` is the whole environment while it runs, as in a shell of its own."""
    from worker import serve_commands
    from worker.cli import main

    # Those that run until stopped serve, consume or patch the interpreter for gevent (`web`).
    assert args and not hasattr(serve_commands, f"cmd_{args[0]}"), f"{args}: run_command"
    out, err = io.StringIO(), io.StringIO()
    saved, saved_tempdir = dict(os.environ), tempfile.tempdir
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # TMPDIR is read again, as a new process reads it
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _stdin(stdin),
        ):
            try:
                status = main(list(args))
            except SystemExit as stop:  # argparse's usage errors, --help, --version
                status = stop.code if isinstance(stop.code, int) else 1 if stop.code else 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
        tempfile.tempdir = saved_tempdir
    return subprocess.CompletedProcess(list(args), status, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _stdin(text: str) -> Iterator[None]:
    saved, sys.stdin = sys.stdin, io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


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
