"""Every CLI mistake as a newcomer makes it: one line on stderr, the right exit status."""

import json
import os
import subprocess
import sys

import pytest
import requests

from .support import TEST_KEY, free_port, fresh_env, run_command, wait_for


def one_error_line(done, status):
    assert done.returncode == status, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.slow
def test_version_and_every_command_and_option_described(tmp_path):
    from worker.cli import build_parser

    done = run_command("--version", env=fresh_env(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("stripe-worker 0.")
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    for name, page in sub.choices.items():
        assert page.description and len(page.description) > 20, name
        for action in page._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    help_page = run_command("send", "--help", env=fresh_env(tmp_path)).stdout
    assert "two customers" in help_page and "--user-id" in help_page


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["send", "signup"], "send signup needs --email"),
        (["send", "stripe"], "needs an event TYPE"),
        (["send", "signup", "--email", "a@example.com", "--metadata", "plan"], "KEY=VALUE"),
        (["tail"], "the following arguments are required: stream"),
        (["tail", "nonsense"], "unknown stream 'nonsense'"),
        (["tail", "customers", "--ack"], "add --group"),
        (["tail", "customers", "--new", "--from-start"], "not allowed with"),
        (["dlq", "replay"], "needs entry ids"),
        (["run", "no-such-file.json"], "cannot read spec"),
        (["frobnicate"], "invalid choice"),
    ],
)
@pytest.mark.slow
def test_usage_mistakes_are_one_line_exit_2(tmp_path, args, says):
    line = one_error_line(run_command(*args, env=fresh_env(tmp_path)), 2)
    assert says in line


@pytest.mark.slow
def test_unknown_dlq_entry_is_one_line_exit_2(tmp_path, redis_url, prefix):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    line = one_error_line(run_command("dlq", "replay", "999-0", env=env), 2)
    assert f"no entry 999-0 in {prefix}:errors" in line


@pytest.mark.parametrize(
    "args",
    [
        ["worker"],
        ["web", "--port", "0"],
        ["dev", "--port", "0"],
        ["tail", "customers"],
        ["dlq", "list"],
        ["run", "--queue", "-"],
        ["check"],
        ["send", "signup", "--email", "a@example.com"],
    ],
)
@pytest.mark.slow
def test_redis_url_without_a_scheme_is_refused_by_every_process(tmp_path, args):
    env = fresh_env(tmp_path, REDIS_URL="127.0.0.1:6390", STRIPE_SECRET_KEY=TEST_KEY)
    spec = json.dumps({"component": "stripe.getStripeCustomer", "customer_id": "cus_1"})
    line = one_error_line(run_command(*args, env=env, stdin=spec, timeout=30), 2)
    assert "REDIS_URL must start with redis://" in line
    assert "amqp" not in line


def test_a_password_in_a_url_without_scheme_is_not_shown(tmp_path):
    env = fresh_env(tmp_path, REDIS_URL="user:s3cretpass@127.0.0.1:6390")
    line = one_error_line(run_command("dlq", "list", env=env), 2)
    assert "s3cretpass" not in line and "***@127.0.0.1:6390" in line


@pytest.mark.slow
def test_absent_redis_is_one_line_exit_1_naming_it(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = fresh_env(tmp_path, REDIS_URL=url)
    for args in (["dlq", "list"], ["tail", "errors"]):
        line = one_error_line(run_command(*args, env=env), 1)
        assert f"Redis at {url} does not answer" in line and "hint:" in line
    done = run_command("tail", "errors", "--json", env=env)
    assert done.returncode == 1
    assert json.loads(done.stderr)["error"]["type"] == "redis_error"


def test_example_agent_without_redis_is_one_line_not_a_traceback(tmp_path):
    env = fresh_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    done = subprocess.run(
        [sys.executable, "examples/agent.py", "--count", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: Redis at") and len(done.stderr.splitlines()) == 1


def run_env(tmp_path, settings, key):
    """A shell for `run`, told the test's Redis and prefix: `run` paces Stripe calls in
    Redis, so without them it would write under the default prefix of the shared Redis."""
    return fresh_env(
        tmp_path,
        STRIPE_SECRET_KEY=key,
        STRIPE_API_BASE=settings.stripe_api_base,
        REDIS_URL=settings.redis_url,
        STREAM_PREFIX=settings.stream_prefix,
    )


@pytest.mark.slow
def test_run_errors_one_line_or_json_with_json(tmp_path, settings):
    env = run_env(tmp_path, settings, TEST_KEY)
    get = json.dumps({"component": "stripe.getStripeCustomer", "customer_id": "cus_nope"})
    line = one_error_line(run_command("run", "-", env=env, stdin=get), 1)
    assert "No such customer" in line
    done = run_command("run", "--json", "-", env=env, stdin=get)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert json.loads(done.stderr)["error"]["type"] == "not_found"
    done = run_command("run", "--json", "-", env=env, stdin="{nope")
    assert done.returncode == 2 and json.loads(done.stderr)["error"]["type"] == "invalid_spec"


@pytest.mark.slow
def test_short_live_key_masked_by_stripe_is_never_shown(tmp_path, emulator, settings):
    short = "sk_live_short"  # Stripe's message masks it as sk_live_*hort
    requests.post(f"{emulator.url}/_emulator/keys", json={"revoke": [short]}, timeout=5)
    env = run_env(tmp_path, settings, short)
    get = json.dumps({"component": "stripe.getStripeCustomer", "customer_id": "cus_1"})
    for args in (["run", "-"], ["run", "--json", "-"]):
        done = run_command(*args, env=env, stdin=get)
        assert done.returncode == 1 and "Invalid API Key" in done.stderr, done.stderr
        assert "hort" not in done.stderr and "sk_live_[redacted]" in done.stderr


@pytest.mark.slow
def test_send_honours_port_without_a_dev(tmp_path, start_web, settings):
    web = start_web()
    env = fresh_env(
        tmp_path,
        PORT=str(web.port),
        SIGNUP_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        REDIS_URL=settings.redis_url,
        STREAM_PREFIX=settings.stream_prefix,
    )
    done = run_command(
        "send", "signup", "--email", "port@example.com", "--user-id", "u_port", env=env
    )
    assert done.returncode == 0, done
    answer, summary = done.stdout.splitlines()
    assert "user u_port, webhook msg_" in summary and f":{web.port}" in summary
    assert answer.startswith("200 ")
    # the same webhook id again is a duplicate delivery, acknowledged and not queued
    webhook_id = summary.split("webhook ")[1].split(" ")[0].rstrip(",")
    again = run_command(
        "send", "signup", "--email", "port@example.com", "--user-id", "u_port",
        "--webhook-id", webhook_id, env=env,
    )  # fmt: skip
    assert again.returncode == 0 and '"duplicate": true' in again.stdout


def test_stripes_own_mask_of_a_short_key_is_redacted():
    from worker.redact import redact

    message = "Invalid API Key provided: sk_live_*hort"  # Stripe keeps the last four
    assert redact(message) == "Invalid API Key provided: sk_live_[redacted]"
    assert "hort" not in redact("Invalid API Key provided: rk_live_****************hort")


@pytest.mark.slow
def test_example_agent_stops_on_ctrl_c_without_a_traceback(tmp_path, redis_url, prefix):
    import signal

    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    agent = subprocess.Popen(
        [sys.executable, "examples/agent.py"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    import redis

    client = redis.Redis.from_url(redis_url)
    try:  # reading: its group exists
        wait_for(lambda: client.exists(f"{prefix}:customers"), timeout=30)
        agent.send_signal(signal.SIGINT)
        _out, err = agent.communicate(timeout=30)
    finally:
        agent.kill()
        client.delete(f"{prefix}:customers")
    assert "Traceback" not in err and agent.returncode in (0, -2), err


def test_a_write_not_replicated_reports_as_unavailable_in_one_line_or_json():
    # redis-py 8's RedisError.__init__ set an instance error_type that hid ours, and the JSON
    # report raised TypeError on its enum.
    from worker.cli_process import error_report
    from worker.connections import check_replicas
    from worker.errors import NotReplicated

    with pytest.raises(NotReplicated) as caught:
        check_replicas(0, 1)
    exc = caught.value
    assert exc.error_type == "unavailable" and exc.retryable
    text, status = error_report(exc, None, as_json=True)
    assert status == 1
    assert json.loads(text)["error"]["type"] == "unavailable"
    line, status = error_report(exc, None, as_json=False)
    assert status == 1 and line.startswith("error: the write reached 0 of REDIS_MIN_REPLICAS=1")
    assert "NotReplicated" in repr(exc)
