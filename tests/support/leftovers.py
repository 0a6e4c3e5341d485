"""What a test run may leave behind: nothing outside its own key prefixes and folders.

The run takes a Redis database of its own on the shared server (`claim_database`) and a
TMPDIR of its own (`RunFolders`); at the end, a key there that is not under a test's
`t<hex>:` prefix, or a file left in that folder, is the run's doing and fails it
(tests/conftest.py). Neither check can fail from another process's activity: other runs
and benchmarks on the machine write to database 0 (or a database they claimed) and to the
system's TMPDIR, never into ours, and a second run of this suite claims another database.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import redis

# The claim lives in the database it claims, expiring in case a run is killed: a live run
# holds it, so two runs never share a database.
CLAIM = "stripe-worker-tests:claimed-by"
CLAIM_SECONDS = 6 * 3600
TEST_KEY_NAME = re.compile(r"^t[0-9a-f]+:")


def claim_database(url: str) -> tuple[str, str | None]:
    """(the URL of a database of this run's own on the server at `url`, the claim's token),
    or (`url`, None) when the server has no free database besides the URL's."""
    client = redis.Redis.from_url(url)
    try:
        databases = int(client.config_get("databases").get("databases", 16))
    except redis.RedisError:  # CONFIG refused (a managed Redis): Redis's default count
        databases = 16
    finally:
        client.close()
    token = uuid.uuid4().hex
    base = url.rsplit("/", 1)[0] if re.search(r"/\d+$", url) else url.rstrip("/")
    for db in range(1, databases):
        candidate = f"{base}/{db}"
        with redis.Redis.from_url(candidate) as db_client:
            if db_client.set(CLAIM, token, nx=True, ex=CLAIM_SECONDS):
                return candidate, token
    return url, None


def release_database(url: str, token: str | None) -> None:
    """Drop the claim if it is still this run's."""
    if token is None:
        return
    with redis.Redis.from_url(url) as client:
        if client.get(CLAIM) == token.encode():
            client.delete(CLAIM)


def stray_keys(url: str) -> set[str]:
    """Keys of the database at `url` outside every test prefix (and the claim)."""
    with redis.Redis.from_url(url, decode_responses=True) as client:
        return {
            key
            for key in client.scan_iter(count=1000)
            if key != CLAIM and not TEST_KEY_NAME.match(key)
        }


def delete_keys(url: str, keys: set[str]) -> None:
    if keys:
        with redis.Redis.from_url(url) as client:
            client.delete(*keys)


class RunFolders:
    """A fresh TMPDIR for this process and every process it starts from now on (they
    inherit the environment, as tests/support/processes.py's clean_env keeps TMPDIR)."""

    def __init__(self) -> None:
        self.system = tempfile.gettempdir()
        self.before = os.environ.get("TMPDIR")
        self.path = Path(tempfile.mkdtemp(prefix="stripe-worker-tests-", dir=self.system))
        # pytest's own tmp_path folders stay where pytest keeps them (its retention policy
        # cleans them): `getbasetemp` reads this variable before TMPDIR (_pytest/tmpdir.py).
        os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", self.system)
        os.environ["TMPDIR"] = str(self.path)
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again

    def left(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir())

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = self.before
        tempfile.tempdir = None
