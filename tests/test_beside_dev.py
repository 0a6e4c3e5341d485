"""Every command beside a running `stripe-worker dev` finds it the same way, and says so;
the first Ctrl-C stops dev with one line of ours."""

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import redis

from worker.devtools.dev_state import state_path

from .support import free_port, fresh_env, group_alive, run_command, start_dev, wait_for

FOUND = "dev       using the running `stripe-worker dev` (pid "
ROOT = Path(__file__).resolve().parent.parent


def found_once(done):
    lines = done.stderr.splitlines()
    assert sum(line.startswith(FOUND) for line in lines) == 1, done.stderr
    return done


@pytest.mark.slow
def test_every_command_finds_dev_then_one_ctrl_c_stops_it(tmp_path):
    env = fresh_env(tmp_path)
    proc, text = start_dev(env, tmp_path, free_port())
    try:
        create = {
            "component": "stripe.createCustomer",
            "trigger": "true",
            "Body": {"email": "run@example.com"},
        }
        done = found_once(run_command("run", "-", env=env, stdin=json.dumps(create)))
        assert done.returncode == 0, done.stderr
        customer = json.loads(done.stdout)["customerId"]
        get = {"component": "stripe.getStripeCustomer", "customer_id": customer}
        done = found_once(run_command("run", "--queue", "-", env=env, stdin=json.dumps(get)))
        assert done.returncode == 0 and json.loads(done.stdout)["queued"] is True
        done = found_once(run_command("check", env=env))
        assert done.returncode == 0 and "FAIL" not in done.stdout, done.stdout
        done = found_once(
            run_command(
                "send",
                "signup",
                "--email",
                "meta@example.com",
                "--user-id",
                "u_meta",
                "--metadata",
                "plan=pro",
                env=env,
            )
        )
        assert done.returncode == 0 and "user u_meta" in done.stdout
        done = found_once(run_command("tail", "customers", "--count", "2", env=env))
        assert customer in done.stdout and "meta@example.com" in done.stdout
        done = found_once(run_command("dlq", "list", env=env))
        assert done.returncode == 0 and "no failures" in done.stdout
        agent = found_once(cli_script(env, "examples/agent.py", "--count", "2", "--consumer", "a1"))
        assert agent.returncode == 0, agent.stderr
        assert "welcome meta@example.com" in agent.stdout and "plan pro" in agent.stdout
        # a Stripe event whose customer cannot be fetched goes to the errors stream only
        done = run_command(
            "send", "stripe", "invoice.payment_failed", "--customer", "cus_gone", env=env
        )
        assert done.returncode == 0, done
        done = run_command("tail", "errors", "--count", "1", env=env)
        assert "cus_gone" in done.stdout and "not_found 404: No such customer" in done.stdout
        state = json.loads(state_path(tmp_path).read_text())
        events = redis.Redis.from_url(state["redis_url"], decode_responses=True)
        types = {e["event_type"] for _id, e in events.xrange("stripe:events")}
        # Only the customer.created the emulator delivered for the customers made above:
        # the event whose customer is gone went to the errors stream alone.
        assert types <= {"customer.created"}, types
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        proc.wait(30)
    out = text()
    assert proc.returncode == 0, out[-2000:]
    assert out.rstrip().splitlines()[-1] == "stopped; nothing left running"
    assert "Warm shutdown" not in out and "Ctrl+C" not in out and "Traceback" not in out
    wait_for(lambda: not group_alive(proc.pid), timeout=10)
    assert not state_path(tmp_path).exists()


def cli_script(env, script, *args):
    import subprocess

    return subprocess.run(
        [sys.executable, script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_a_dead_dev_is_not_used(tmp_path, redis_url):
    state = tmp_path / f"stripe-worker-dev-{os.getuid()}.json"
    dead = 2**22 + 1  # above pid_max's default: no such process
    state.write_text(
        json.dumps(
            {
                "pid": dead,
                "receiver": "http://127.0.0.1:9",
                "redis_url": "redis://127.0.0.1:9/0",
                "stream_prefix": "stripe",
                "secrets": {},
                "stripe_api_base": "http://127.0.0.1:9",
            }
        )
    )
    done = run_command("dlq", "list", env=fresh_env(tmp_path, REDIS_URL=redis_url))
    assert done.returncode == 0 and FOUND not in done.stderr
    done = run_command("dlq", "list", env=fresh_env(tmp_path, STREAM_PREFIX="tdead"))
    assert FOUND not in done.stderr  # the default Redis, not the dead dev's port 9
