"""The run fails when it leaves something behind (tests/support/leftovers.py): a run of its
own, with the suite's conftest, over one test that leaves a key and a folder."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEAKY = """
import tempfile

import redis


def test_leaves_a_key_and_a_folder(redis_url):
    redis.Redis.from_url(redis_url).set("left:behind", 1)
    tempfile.mkdtemp(prefix="left-behind-")


def test_leaves_nothing(redis_url, prefix, tmp_path):
    client = redis.Redis.from_url(redis_url)
    client.set(f"{prefix}:kept", 1)  # under a test prefix: allowed
    (tmp_path / "kept").write_text("pytest's own folder")
    client.delete(f"{prefix}:kept")
"""


def run(tmp_path: Path, *names: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(LEAKY)
    ids = [f"{tmp_path / 'test_inner.py'}::{name}" for name in names]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-n", "0", "-q", *ids],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_key_outside_the_prefixes_or_a_file_left_fails_the_run(tmp_path):
    done = run(tmp_path, "test_leaves_a_key_and_a_folder")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout and "left behind by the run" in done.stdout
    assert "['left:behind']" in done.stdout and "left-behind-" in done.stdout


@pytest.mark.slow
def test_keys_under_a_test_prefix_and_pytests_own_folders_are_fine(tmp_path):
    done = run(tmp_path, "test_leaves_nothing")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "left behind" not in done.stdout
