"""Fixtures: a real Redis, a real emulator over HTTP, settings and a vault per test.

Redis: the one at REDIS_URL (default 127.0.0.1:6379); where none answers, a
`redis-server` started for the run if installed, else fakeredis's TCP server.
The header of the run says which.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC

import pytest
import redis

from worker.devtools.emulator import EmulatorServer
from worker.devtools.local import free_port, redis_answers
from worker.settings import Settings
from worker.vault import Vault

TEST_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
LIVE_KEY = "sk_live_51HxYzTestOnlyNotARealKey00"

_redis: dict[str, object] = {}


def _start_redis() -> tuple[str, str, object]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(url):
        return url, f"the Redis at {url}", None
    port = free_port()
    if shutil.which("redis-server"):
        workdir = tempfile.mkdtemp(prefix="stripe-worker-redis-")
        proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            if redis_answers(url):
                break
            time.sleep(0.05)
        return url, f"redis-server started for this run on port {port}", proc
    from worker.devtools.local import embedded_redis

    server = embedded_redis(port)
    return f"redis://127.0.0.1:{port}/0", f"fakeredis TCP server on port {port}", server


def pytest_configure(config: pytest.Config) -> None:
    url, how, handle = _start_redis()
    _redis.update(url=url, how=how, handle=handle)
    os.environ["STRIPE_WORKER_TEST_REDIS_URL"] = url


def pytest_unconfigure(config: pytest.Config) -> None:
    handle = _redis.get("handle")
    if isinstance(handle, subprocess.Popen):
        handle.terminate()
        handle.wait(5)
    elif handle is not None:
        handle.shutdown()  # type: ignore[attr-defined]


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


STRIPE_WEBHOOK_SECRET = "whsec_test_stripe_endpoint_secret_0001"
# Standard Webhooks secrets are base64 after the prefix.
SIGNUP_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def sign_stripe(
    payload: bytes | str, secret: str = STRIPE_WEBHOOK_SECRET, timestamp: int | None = None
) -> str:
    """A Stripe-Signature header made by the official SDK (by hand for bytes not UTF-8)."""
    import hashlib
    import hmac

    import stripe

    if isinstance(payload, bytes):
        try:
            payload = payload.decode()
        except UnicodeDecodeError:
            stamp = int(time.time()) if timestamp is None else timestamp
            mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
            return f"t={stamp},v1={mac.hexdigest()}"
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)


def sign_standard(
    payload: bytes | str,
    msg_id: str = "msg_1",
    secret: str = SIGNUP_WEBHOOK_SECRET,
    timestamp: float | None = None,
    prefix: str = "webhook",
) -> dict[str, str]:
    """Standard Webhooks headers made by the `standardwebhooks` library (by hand for bytes
    that are not UTF-8, which the library cannot sign)."""
    import base64
    import hashlib
    import hmac
    from datetime import datetime

    from standardwebhooks.webhooks import Webhook

    stamp = int(time.time() if timestamp is None else timestamp)
    if isinstance(payload, bytes):
        try:
            payload = payload.decode()
        except UnicodeDecodeError:
            key = base64.b64decode(secret.removeprefix("whsec_"))
            mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + payload, hashlib.sha256)
            signature = "v1," + base64.b64encode(mac.digest()).decode()
            return {
                f"{prefix}-id": msg_id,
                f"{prefix}-timestamp": str(stamp),
                f"{prefix}-signature": signature,
            }
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), payload)
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(stamp),
        f"{prefix}-signature": signature,
    }


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


def queued(redis_client: redis.Redis, settings: Settings) -> list[dict]:
    """The task messages waiting on the Celery queue: [{"task", "kwargs"}...]."""
    from worker.envelope import open_envelope

    found = []
    for raw in redis_client.lrange(settings.keys.queue, 0, -1):
        message_id, task, (_args, kwargs, _embed) = open_envelope(raw)
        found.append({"task": task, "kwargs": kwargs, "id": message_id})
    return found


class WorkerProcess:
    """`stripe-worker worker` as a real process in its own process group."""

    def __init__(self, env: dict[str, str], log_path: str) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, *extra: str) -> WorkerProcess:
        import sys

        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker", "--loglevel=INFO", *extra],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL to the whole group: the worker and its pool children die mid-task."""
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def worker_env(settings: Settings, env: dict[str, str], **extra: object) -> dict[str, str]:
    """The environment a worker process sees for `settings`: fast retries for tests."""
    child = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE", "REDIS", "STREAM", "RETRY", "VISIBILITY"))
    }
    child.update(env)
    child.update(
        REDIS_URL=settings.redis_url,
        STRIPE_API_BASE=settings.stripe_api_base,
        STREAM_PREFIX=settings.stream_prefix,
        RETRY_BASE_DELAY="0.1",
        RETRY_MAX_DELAY="0.4",
        RETRY_MAX_ATTEMPTS="5",
        STRIPE_TIMEOUT="5",
        TASK_TIME_LIMIT="10",
        VISIBILITY_TIMEOUT="12",
        WORKER_CONCURRENCY="4",
    )
    child.update({k: str(v) for k, v in extra.items()})
    return child


@pytest.fixture
def start_worker(settings: Settings, webhook_env: dict[str, str], tmp_path):
    """Start real worker processes; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(*extra: str, **env_extra: object) -> WorkerProcess:
        w = WorkerProcess(
            worker_env(settings, webhook_env, **env_extra),
            str(tmp_path / f"worker{len(started)}.log"),
        ).start(*extra)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll until `predicate()` is truthy; its last value, or AssertionError on time out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def entries(redis_client: redis.Redis, settings: Settings, stream: str) -> list[dict]:
    return [fields for _id, fields in redis_client.xrange(settings.keys.stream(stream))]


class RedisServer:
    """A Redis of a test's own, that the test can stop and start again on the same port:
    `redis-server` when installed, else fakeredis's TCP server."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._handle: object = None

    def start(self) -> RedisServer:
        if shutil.which("redis-server"):
            self._handle = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    tempfile.mkdtemp(prefix="sw-redis-"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            from worker.devtools.local import embedded_redis

            self._handle = embedded_redis(self.port)
        wait_for(lambda: redis_answers(self.url), timeout=10)
        return self

    def stop(self) -> None:
        if isinstance(self._handle, subprocess.Popen):
            self._handle.kill()
            self._handle.wait(5)
        elif self._handle is not None:
            self._handle.shutdown()  # type: ignore[attr-defined]
            self._handle.server_close()  # type: ignore[attr-defined]
        self._handle = None


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


class WebProcess:
    """`stripe-worker web` (gunicorn) on a free port, as a real process."""

    def __init__(self, env: dict[str, str], log_path: str, workers: int = 2) -> None:
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "web",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import requests

        def up() -> bool:
            try:
                return requests.get(self.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                assert self.proc.poll() is None, self.log()
                return False

        wait_for(up, timeout=30)

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def start_web(settings: Settings, webhook_env: dict[str, str], tmp_path):
    started: list[WebProcess] = []

    def start(settings_: Settings | None = None, **env_extra: object) -> WebProcess:
        env = worker_env(settings_ or settings, webhook_env, **env_extra)
        web = WebProcess(env, str(tmp_path / f"web{len(started)}.log"))
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()


def at_once(n: int, call):
    """Run `call()` in `n` threads released together; their results, as they finish."""
    results: list = []
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        results.append(call())

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def faults(emulator: EmulatorServer, **spec: object) -> None:
    """Set the emulator's fault injection through its admin route."""
    import requests

    requests.post(f"{emulator.url}/_emulator/faults", json=spec, timeout=5).raise_for_status()


def emulator_stats(emulator: EmulatorServer) -> dict:
    import requests

    return requests.get(f"{emulator.url}/_emulator/stats", timeout=5).json()
