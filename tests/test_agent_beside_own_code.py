"""An agent project with its own `worker.py` and `tasks.py` (the usual Celery layout) runs the
README's consumer snippet, from a wheel built of this tree and installed into a venv of its
own: the helper it imports (`stripe_worker_agent`) must not reach for the generic names the
project's own files take, as the script's folder comes first on sys.path."""

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .support import enqueue, signup_work, wait_for

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
USERS_TASKS = '''"""The agent project's own Celery tasks."""
from celery import Celery

app = Celery("tasks")


@app.task
def remember(work_id):
    return work_id
'''
USERS_WORKER = '''"""The agent project's own worker module."""
NAME = "the user's worker"
'''


def readme_snippet() -> str:
    readme = (ROOT / "README.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    [snippet] = [b for b in blocks if "StreamConsumer(" in b]
    return snippet


def install_wheel(tmp_path: Path) -> Path:
    """A venv holding only the wheel of this tree; its dependencies are the test's own,
    reached through a .pth line (a folder named in a .pth is put on sys.path as it is: the
    .pth files inside, such as this checkout's editable install, are not read)."""
    # Built from a copy: setuptools leaves build/ and *.egg-info in the folder it builds.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", wheels],
        check=True,
        capture_output=True,
        timeout=600,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    [wheel] = wheels.glob("stripe_worker-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


@pytest.mark.slow
def test_the_readme_snippet_reads_a_stream_beside_a_users_worker_and_tasks(
    tmp_path, settings, redis_client, start_inprocess_worker
):
    python = install_wheel(tmp_path)
    project = tmp_path / "agent-project"
    project.mkdir()
    (project / "tasks.py").write_text(USERS_TASKS)
    (project / "worker.py").write_text(USERS_WORKER)
    snippet = readme_snippet()
    assert snippet.rstrip().endswith("consumer.run(handle)")
    agent = (
        "import tasks, worker  # the project's own, imported first as its code would\n"
        + snippet.rstrip().removesuffix("consumer.run(handle)")
        + "consumer.run(handle, limit=1)\n"
        + "assert worker.NAME == \"the user's worker\" and tasks.app.main == 'tasks'\n"
        + "import stripe_worker_agent\n"
        + "print('helper from', stripe_worker_agent.__file__)\n"
    )
    (project / "agent.py").write_text(agent)
    stream = f"{settings.stream_prefix}:customers"
    start_inprocess_worker()  # a real customers entry, from a signup through the worker
    enqueue(redis_client, settings, [signup_work("u_beside")])
    wait_for(lambda: redis_client.xlen(stream) == 1, timeout=60)
    done = subprocess.run(
        [python, "agent.py"],
        cwd=project,
        env={
            "PATH": "/usr/bin:/bin",
            "REDIS_URL": settings.redis_url,
            "STREAM_PREFIX": settings.stream_prefix,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [(_id, entry)] = redis_client.xrange(stream)
    assert f"welcome {entry['customerEmail']}\n" in done.stdout
    assert f"helper from {tmp_path / 'venv'}" in done.stdout  # the wheel's, not this tree's
    assert redis_client.xpending(stream, "agents")["pending"] == 0  # acknowledged
