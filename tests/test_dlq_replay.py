"""`dlq replay --all` replays every failure, however many, and its marks expire."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tasks.publish import as_field
from tests.support import worker_env
from webhooks.signup import signup_component
from worker.work import Work


def failed_signup(i: int) -> dict[str, str]:
    payload = {"type": "user.created", "data": {"user_id": f"u_{i}", "email": f"u{i}@example.com"}}
    _user, spec = signup_component(payload)
    work = Work.for_component(spec, "signup", f"msg_{i}")
    fields = {
        "component": "stripe.createCustomer",
        "source": "signup",
        "source_id": f"msg_{i}",
        "error_type": "authentication_error",
        "error_message": "revoked",
        "task": work.task,
        "task_kwargs": {"work": work.to_json()},
    }
    return {k: as_field(v) for k, v in fields.items()}


def dlq(settings, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worker", "dlq", *args],
        env=worker_env(settings, env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.handmade_entries
@pytest.mark.slow
def test_replay_all_replays_every_failure_in_batches(redis_client, settings, webhook_env):
    errors = settings.keys.stream("errors")
    pipe = redis_client.pipeline(transaction=False)
    for i in range(2100):
        pipe.xadd(errors, failed_signup(i))
    pipe.xadd(errors, {"error_type": "invalid_message", "message": "{}", "task": "x"})
    pipe.execute()

    done = dlq(settings, webhook_env, "replay", "--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("queued again") == 2100
    assert "1 quarantined message" in done.stderr
    assert redis_client.llen(settings.keys.queue) == 2100

    again = dlq(settings, webhook_env, "replay", "--all")
    assert again.stdout.count("queued again") == 0
    assert redis_client.llen(settings.keys.queue) == 2100

    # The marks expire with the published-once marks, not never.
    first_id = redis_client.xrange(errors, count=1)[0][0]
    ttl = redis_client.ttl(settings.keys.replayed(first_id))
    assert 0 < ttl <= settings.customer_memory_ttl
    listed = dlq(settings, webhook_env, "list", "--json", "--count", "5")
    assert all(json.loads(line)["replayed"] for line in listed.stdout.splitlines()[:-1])


@pytest.mark.handmade_entries
def test_a_quarantined_message_is_not_replayed_by_id(redis_client, settings, webhook_env):
    entry_id = redis_client.xadd(
        settings.keys.stream("errors"), {"error_type": "invalid_message", "message": "{}"}
    )
    done = dlq(settings, webhook_env, "replay", entry_id)
    assert done.returncode == 2 and "quarantined" in done.stderr
