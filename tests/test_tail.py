"""`stripe-worker tail` as a user runs it: the last entries, then follow; groups explicit."""

import subprocess
import threading

import pytest

from .support import cli, fresh_env, run_in_process, wait_for

# The entries here are hand-made (tail shows any fields); `settings` deletes them after.
pytestmark = [pytest.mark.handmade_entries, pytest.mark.usefixtures("settings")]


def add(redis_client, prefix, stream, n, **fields):
    return [
        redis_client.xadd(
            f"{prefix}:{stream}",
            {
                "component": "stripe.createCustomer",
                "customerId": f"cus_{i:04d}",
                "customerEmail": f"user{i}@example.com",
                "source": "signup",
                "source_id": f"msg_{i}",
                **fields,
            },
        )
        for i in range(n)
    ]


class Tail:
    """`tail` running in the background; its output lines as they come."""

    def __init__(self, env, *args):
        self.proc = subprocess.Popen(
            cli("tail", *args),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def finish(self):
        try:
            self.proc.wait(timeout=30)
        finally:
            self.proc.kill()
        self.reader.join(5)
        return self.proc.returncode, self.lines


def test_tail_shows_the_last_entries_then_follows(tmp_path, redis_url, prefix, redis_client):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    add(redis_client, prefix, "customers", 12)
    tail = Tail(env, "customers", "--count", "11")
    # the last ten at once; the eleventh is one that arrives while it follows
    wait_for(lambda: len(tail.lines) >= 10, timeout=20)
    redis_client.xadd(f"{prefix}:customers", {"customerId": "cus_late", "source": "cli"})
    status, lines = tail.finish()
    assert status == 0
    assert [line.split()[2] for line in lines[:10]] == [f"cus_{i:04d}" for i in range(2, 12)]
    assert "cus_late" in lines[10]


def test_from_start_and_new(tmp_path, redis_url, prefix, redis_client):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    add(redis_client, prefix, "customers", 12)
    done = run_in_process("tail", "customers", "--from-start", "--count", "12", env=env)
    assert done.returncode == 0 and "cus_0000" in done.stdout.splitlines()[0]
    tail = Tail(env, "customers", "--new", "--count", "1")
    # --new shows none of the twelve: keep adding until it shows one that arrived
    wait_for(
        lambda: redis_client.xadd(f"{prefix}:customers", {"customerId": "cus_new"}) and tail.lines,
        timeout=20,
        interval=0.3,
    )
    status, lines = tail.finish()
    assert status == 0 and len(lines) == 1 and "cus_new" in lines[0]


def test_tail_errors_shows_type_status_and_message(tmp_path, redis_url, prefix, redis_client):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    add(
        redis_client,
        prefix,
        "errors",
        1,
        error_type="authentication_error",
        http_status="401",
        error_message="Stripe refused the API key (401): Invalid API Key provided",
    )
    done = run_in_process("tail", "errors", "--count", "1", env=env)
    assert done.returncode == 0
    assert "authentication_error 401: Stripe refused the API key (401)" in done.stdout


def test_group_acknowledges_only_with_ack(tmp_path, redis_url, prefix, redis_client):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    key = f"{prefix}:customers"
    add(redis_client, prefix, "customers", 2)
    done = run_in_process("tail", "customers", "--group", "agents", "--count", "1", env=env)
    assert done.returncode == 0 and "cus_0000" in done.stdout
    assert "not acknowledging" in done.stderr and "--ack" in done.stderr
    assert redis_client.xpending(key, "agents")["pending"] == 1  # still an agent's to handle
    done = run_in_process(
        "tail", "customers", "--group", "agents", "--ack", "--count", "1", env=env
    )
    assert done.returncode == 0 and "cus_0001" in done.stdout
    assert "acknowledging each entry" in done.stderr
    assert redis_client.xpending(key, "agents")["pending"] == 1  # the second one was acked


def test_group_follows_past_ten_entries(tmp_path, redis_url, prefix, redis_client):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    add(redis_client, prefix, "customers", 25)
    tail = Tail(env, "customers", "--group", "watchers", "--ack")
    try:
        wait_for(lambda: len(tail.lines) == 25 or tail.proc.poll() is not None, timeout=20)
        assert tail.proc.poll() is None  # still following
    finally:
        tail.proc.kill()
    assert redis_client.xpending(f"{prefix}:customers", "watchers")["pending"] == 0
