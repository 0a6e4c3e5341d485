"""Fixtures: a real Redis, a real emulator over HTTP, settings and a vault per test, and
the project's processes. Helpers live in tests/support/.

Redis: the one at REDIS_URL (default 127.0.0.1:6379), in a database the run claims for
itself; where none answers, a `redis-server` started for the run if installed, else
fakeredis's TCP server. The header of the run says which.

Leftovers fail the run (tests/support/leftovers.py): a key outside the tests' `t<hex>:`
prefixes in the run's database, or a file in the run's TMPDIR. Checked by the process that
controls the run, once every test is over: under xdist a session fixture ends in each
worker while the others still run, so it could not tell a leftover from work in progress.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from worker.devtools.emulator import EmulatorServer
from worker.settings import Settings
from worker.vault import Vault

from .support import (
    SIGNUP_WEBHOOK_SECRET,
    STRIPE_WEBHOOK_SECRET,
    TEST_KEY,
    InProcessWorker,
    RedisServer,
    WebProcess,
    WorkerProcess,
    compile_project,
    leftovers,
    schedule,
    shared_redis,
    worker_env,
)

_redis: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller chose for the run
        _redis.update(url=os.environ["STRIPE_WORKER_TEST_REDIS_URL"], how="", server=None)
        return
    compile_project()
    url, how, server = shared_redis()
    token = None
    if server is None:  # a shared server: a database of the run's own on it
        url, token = leftovers.claim_database(url)
        db = url.rsplit("/", 1)[1]
        how += f", database {db} (claimed)" if token else f", database {db} (none free to claim)"
    # Keys are checked only in a database that is the run's alone: in a shared one, another
    # process's keys could not be told from ours (and must not be deleted).
    own = server is not None or token is not None
    _redis.update(
        url=url,
        how=how,
        server=server,
        token=token,
        folders=leftovers.RunFolders(),
        keys=leftovers.stray_keys(url) if own else None,
    )
    # Read by the xdist workers (started after this) and by entry_schemas.
    os.environ["STRIPE_WORKER_TEST_REDIS_URL"] = url


def expected_seconds(item: pytest.Item) -> float:
    """About how long a test takes: `slow(seconds=N)` where measured, 3 for another slow
    test, 0 for the rest."""
    mark = item.get_closest_marker("slow")
    return 0.0 if mark is None else float(mark.kwargs.get("seconds", 3))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    items[:] = schedule.dealt(items, workers, expected_seconds)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    folders = _redis.get("folders")
    if not isinstance(folders, leftovers.RunFolders):
        return  # an xdist worker
    url, before = str(_redis["url"]), _redis["keys"]
    keys = leftovers.stray_keys(url) - before if isinstance(before, set) else set()
    files = folders.left()
    leftovers.delete_keys(url, keys)
    folders.remove()
    if keys or files:
        report = session.config.pluginmanager.get_plugin("terminalreporter")
        if report is not None:
            report.write_line("")
            report.write_sep("=", "left behind by the run", red=True)
            if keys:
                report.write_line(f"Redis keys outside a t<hex>: prefix: {sorted(keys)}")
            if files:
                report.write_line(f"in TMPDIR ({folders.path}): {files}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    server = _redis.get("server")
    if isinstance(server, RedisServer):
        server.stop()
    if "token" in _redis:
        leftovers.release_database(str(_redis["url"]), _redis["token"])  # type: ignore[arg-type]


def pytest_report_header(config: pytest.Config) -> str:
    return f"redis: {_redis['how']}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    return str(_redis["url"])


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    server = EmulatorServer("127.0.0.1", 0).start()
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """The emulator, with no customers, faults or revoked keys left from another test."""
    emulator_server.state.reset()
    return emulator_server


@pytest.fixture
def prefix() -> str:
    """A STREAM_PREFIX of its own, so tests sharing one Redis never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(
    emulator: EmulatorServer, redis_url: str, prefix: str, redis_client: redis.Redis
) -> Iterator[Settings]:
    yield Settings(
        redis_url=redis_url, stripe_api_base=emulator.url, stream_prefix=prefix, stripe_timeout=5.0
    )
    keys = list(redis_client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def env() -> dict[str, str]:
    """The environment the vault reads in a test; tests add to it."""
    return {"STRIPE_SECRET_KEY": TEST_KEY}


@pytest.fixture
def vault(env: dict[str, str]) -> Vault:
    return Vault(None, env)


@pytest.fixture
def webhook_env(env: dict[str, str]) -> dict[str, str]:
    env.update(
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET, SIGNUP_WEBHOOK_SECRET=SIGNUP_WEBHOOK_SECRET
    )
    return env


@pytest.fixture
def app(settings: Settings, webhook_env: dict[str, str]):
    from webhooks import create_app

    return create_app(settings, vault=Vault(None, webhook_env))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def start_worker(
    settings: Settings, webhook_env: dict[str, str], tmp_path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes (`start(*args, **env)`); all stopped at the end of the
    test. For tests that kill a worker or need its process; else `start_inprocess_worker`."""
    started: list[WorkerProcess] = []

    def start(*extra: str, **env_extra: object) -> WorkerProcess:
        w = WorkerProcess(
            worker_env(settings, webhook_env, **env_extra),
            tmp_path / f"worker{len(started)}.log",
        ).start(*extra)
        started.append(w)
        return w

    yield start
    for w in started:  # all at once: each takes a moment to finish
        w.terminate()
    for w in started:
        w.stop()


@pytest.fixture
def start_inprocess_worker(
    settings: Settings, webhook_env: dict[str, str]
) -> Iterator[Callable[..., InProcessWorker]]:
    """Start the worker on a thread of this process (`start(**settings_changes)`), with
    the same quick retries as `start_worker`; stopped at the end of the test."""
    started: list[InProcessWorker] = []

    def start(**changes: object) -> InProcessWorker:
        w = InProcessWorker(settings, Vault(None, webhook_env), **changes).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, that it may stop, pause and start again."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def start_web(
    settings: Settings, webhook_env: dict[str, str], tmp_path
) -> Iterator[Callable[..., WebProcess]]:
    """Start `stripe-worker web` processes (`start(settings=None, **env)`); all stopped at
    the end of the test."""
    started: list[WebProcess] = []

    def start(settings_: Settings | None = None, **env_extra: object) -> WebProcess:
        env = worker_env(settings_ or settings, webhook_env, **env_extra)
        web = WebProcess(env, tmp_path / f"web{len(started)}.log")
        started.append(web)
        return web

    yield start
    for web in started:
        web.terminate(signal.SIGINT)  # gunicorn's quick shutdown: nothing is checked after
    for web in started:
        web.stop()
