"""Every CLI mistake as a newcomer makes it: one line on stderr, the right exit status."""

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from .support import TEST_KEY, free_port, fresh_env, run_command, run_in_process, wait_for


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
def test_usage_mistakes_are_one_line_exit_2(tmp_path, args, says):
    line = one_error_line(run_in_process(*args, env=fresh_env(tmp_path)), 2)
    assert says in line


def test_unknown_dlq_entry_is_one_line_exit_2(tmp_path, redis_url, prefix):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
    line = one_error_line(run_in_process("dlq", "replay", "999-0", env=env), 2)
    assert f"no entry 999-0 in {prefix}:errors" in line


@pytest.mark.parametrize(
    "args",
    [
        ["worker"],
        ["web", "--port", "8000"],
        ["dev", "--port", "8000"],
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
    line = one_error_line(run_in_process("dlq", "list", env=env), 2)
    assert "s3cretpass" not in line and "***@127.0.0.1:6390" in line


def test_absent_redis_is_one_line_exit_1_naming_it(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = fresh_env(tmp_path, REDIS_URL=url)
    for args in (["dlq", "list"], ["tail", "errors"]):
        line = one_error_line(run_in_process(*args, env=env), 1)
        assert f"Redis at {url} does not answer" in line and "hint:" in line
    done = run_in_process("tail", "errors", "--json", env=env)
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


def test_run_errors_one_line_or_json_with_json(tmp_path, settings):
    env = run_env(tmp_path, settings, TEST_KEY)
    get = json.dumps({"component": "stripe.getStripeCustomer", "customer_id": "cus_nope"})
    line = one_error_line(run_in_process("run", "-", env=env, stdin=get), 1)
    assert "No such customer" in line
    done = run_in_process("run", "--json", "-", env=env, stdin=get)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert json.loads(done.stderr)["error"]["type"] == "not_found"
    done = run_in_process("run", "--json", "-", env=env, stdin="{nope")
    assert done.returncode == 2 and json.loads(done.stderr)["error"]["type"] == "invalid_spec"


def test_short_live_key_masked_by_stripe_is_never_shown(tmp_path, emulator, settings):
    short = "sk_live_short"  # Stripe's message masks it as sk_live_*hort
    requests.post(f"{emulator.url}/_emulator/keys", json={"revoke": [short]}, timeout=5)
    env = run_env(tmp_path, settings, short)
    get = json.dumps({"component": "stripe.getStripeCustomer", "customer_id": "cus_1"})
    for args in (["run", "-"], ["run", "--json", "-"]):
        done = run_in_process(*args, env=env, stdin=get)
        assert done.returncode == 1 and "Invalid API Key" in done.stderr, done.stderr
        assert "hort" not in done.stderr and "sk_live_[redacted]" in done.stderr


def test_send_honours_port_without_a_dev(tmp_path, start_web, settings):
    web = start_web()
    env = fresh_env(
        tmp_path,
        PORT=str(web.port),
        SIGNUP_WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        REDIS_URL=settings.redis_url,
        STREAM_PREFIX=settings.stream_prefix,
    )
    done = run_in_process(
        "send", "signup", "--email", "port@example.com", "--user-id", "u_port", env=env
    )
    assert done.returncode == 0, done
    answer, summary = done.stdout.splitlines()
    assert "user u_port, webhook msg_" in summary and f":{web.port}" in summary
    assert answer.startswith("200 ")
    # the same webhook id again is a duplicate delivery, acknowledged and not queued
    webhook_id = summary.split("webhook ")[1].split(" ")[0].rstrip(",")
    again = run_in_process(
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


# -- issue 25: every operator mistake in its list, one line and an exit status -------------

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.slow
@pytest.mark.parametrize("args", [["web"], ["dev"]])
def test_a_port_that_is_not_a_number_is_refused_not_8000(tmp_path, args):
    line = one_error_line(run_command(*args, env=fresh_env(tmp_path, PORT="eighty")), 2)
    assert "PORT must be a port number from 1 to 65535, got 'eighty'" in line
    line = one_error_line(run_command(*args, "--port", "99999", env=fresh_env(tmp_path)), 2)
    assert "--port" in line and "99999" in line


@pytest.fixture
def taken_port():
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_web_on_a_taken_port_is_one_line(tmp_path, taken_port, redis_url):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, SIGNUP_WEBHOOK_SECRET=WHSEC)
    done = run_command("web", "--host", "127.0.0.1", "--port", str(taken_port), env=env)
    line = one_error_line(done, 2)  # not gunicorn's five tries and its own 12 lines
    assert f"cannot listen on 127.0.0.1:{taken_port}: another process has that port" in line


def test_dev_with_an_explicit_taken_port_is_refused_not_moved(tmp_path, taken_port):
    done = run_command("dev", "--port", str(taken_port), env=fresh_env(tmp_path))
    line = one_error_line(done, 2)
    assert f"port {taken_port} on 127.0.0.1 is taken" in line and done.stdout == ""


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://h:6391/abc", "the database must be a number, such as /0; got /abc"),
        ("redis://:pw@127.0.0.1:63x9/0", "the port '63x9' is not a number from 1 to 65535"),
        ("redis://127.0.0.1:70000/0", "the port '70000'"),
    ],
)
@pytest.mark.slow
def test_a_malformed_redis_url_is_refused_naming_the_part(tmp_path, url, says):
    for args in (["status"], ["worker"]):
        line = one_error_line(run_command(*args, env=fresh_env(tmp_path, REDIS_URL=url)), 2)
        assert f"REDIS_URL: {says}" in line and "pw" not in line


@pytest.mark.parametrize("args", [["check"], ["worker"], ["web"]])
def test_a_secrets_dir_that_does_not_exist_is_named(tmp_path, args):
    env = fresh_env(tmp_path, SECRETS_DIR=str(tmp_path / "nowhere"))
    line = one_error_line(run_command(*args, env=env), 2)
    assert f"SECRETS_DIR {tmp_path / 'nowhere'} is not a folder (it does not exist)" in line


def test_a_whsec_secret_that_is_not_base64_is_named_as_such(tmp_path, redis_url):
    env = fresh_env(tmp_path, REDIS_URL=redis_url, SIGNUP_WEBHOOK_SECRET="whsec_!!notbase64")
    done = run_in_process("check", env=env)
    [line] = [line for line in done.stdout.splitlines() if "signup_webhook_secret" in line]
    assert done.returncode == 1 and line.startswith("FAIL")
    assert "value 1 is not valid base64 after whsec_" in line


@pytest.mark.slow
def test_tail_count_on_a_shorter_stream_returns_saying_so(tmp_path, redis_url, prefix):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.xadd(f"{prefix}:customers", {"customerId": "cus_only"})
    try:
        env = fresh_env(tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
        # --wait is the point here; its default is 10 s
        done = run_in_process("tail", "customers", "--count", "5", "--wait", "2", env=env)
    finally:
        client.delete(f"{prefix}:customers")
    assert done.returncode == 1 and "cus_only" in done.stdout
    assert done.stderr.splitlines() == [
        "tail      1 of 5 entries: none came in the last 2 s (--wait SECONDS waits longer)"
    ]


def test_run_says_why_a_create_needs_a_trigger(tmp_path):
    spec = json.dumps({"component": "stripe.createCustomer", "Body": {"email": "a@b.co"}})
    line = one_error_line(run_in_process("run", "-", env=fresh_env(tmp_path), stdin=spec), 2)
    assert 'needs a "trigger"' in line and "agent platform" in line


def test_worker_as_root_is_one_line_of_ours_not_celerys_warning(start_worker):
    worker = start_worker()
    wait_for(lambda: " ready." in worker.log(), timeout=60)  # Celery's last line at start
    log = worker.log()
    assert "SecurityWarning" not in log and "superuser privileges" not in log
    ours = [line for line in log.splitlines() if "running as root" in line]
    assert len(ours) == (1 if os.geteuid() == 0 else 0)


@pytest.mark.slow
def test_a_worker_says_once_that_redis_is_gone_and_once_that_it_is_back(
    start_worker, own_redis, settings
):
    import redis

    local = settings.with_(redis_url=own_redis.url)
    worker = start_worker(REDIS_URL=own_redis.url)
    client = redis.Redis.from_url(own_redis.url)
    wait_for(lambda: client.zcard(local.keys.workers) > 0, timeout=60)
    own_redis.stop()
    wait_for(lambda: "does not answer" in worker.log(), timeout=30)
    # Not a wait for anything: the window in which one line a beat (HEARTBEAT_INTERVAL,
    # 1 s) would have written four more, and Celery's reconnects (2 s, 4 s) two.
    time.sleep(5)
    own_redis.start()
    wait_for(lambda: "answers again" in worker.log(), timeout=60)
    lines = worker.log().splitlines()
    gone = [line for line in lines if "does not answer" in line]
    assert len(gone) == 1 and f"Redis at {own_redis.url}" in gone[0]
    assert not [
        line for line in lines if "Cannot connect to" in line or ": ConnectionError" in line
    ]


def test_dev_behind_a_pipe_logs_no_colour_codes(tmp_path):
    import signal

    from .support import start_dev

    port = free_port()
    proc, text = start_dev(fresh_env(tmp_path), tmp_path, port)  # its output: a file
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        requests.get(f"http://127.0.0.1:{port}/nowhere", timeout=5)  # 404: werkzeug's yellow
        wait_for(lambda: "/nowhere" in text(), timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "\x1b[" not in text()


@pytest.mark.slow
def test_two_checkouts_do_not_find_each_others_dev(tmp_path):
    """A second checkout (a copy of the package elsewhere) runs `dev`; this checkout's
    commands do not take it for theirs, the copy's do."""
    import re
    import shutil
    import signal
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    other = tmp_path / "other-checkout"
    for package in ("worker", "tasks", "webhooks"):
        shutil.copytree(
            root / package, other / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    env = fresh_env(tmp_path, PYTHONPATH=str(other))
    log_path = tmp_path / "other-dev.log"
    with open(log_path, "wb") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "worker", "dev", "--port", str(free_port())],
            env=env, cwd=other, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: "ready." in log_path.read_text() or dev.poll() is not None, timeout=60)
        assert dev.poll() is None, log_path.read_text()
        url = re.search(r"embedded fakeredis at (\S+)", log_path.read_text()).group(1)
        beside = dict(env, REDIS_URL=url)
        theirs = subprocess.run(
            [sys.executable, "-m", "worker", "dlq", "list"],
            env=beside, cwd=other, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "using the running `stripe-worker dev`" in theirs.stderr, theirs
        ours = run_command(
            "dlq", "list", env={k: v for k, v in beside.items() if k != "PYTHONPATH"}
        )
        assert ours.returncode == 0 and "stripe-worker dev" not in ours.stderr, ours
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(30)


def test_an_outage_is_said_again_only_at_its_interval(caplog):
    import logging

    import redis

    from worker.redis_problems import Outage

    log = logging.getLogger("stripe_worker.test_outage")
    outage = Outage(log, "redis://:pw@127.0.0.1:1/0", every=0.3)
    with caplog.at_level(logging.WARNING, logger=log.name):
        started = time.monotonic()
        beats = 0
        # a beat every 10 ms, at least 50 of them and for at least 0.7 s
        while beats < 50 or time.monotonic() - started < 0.7:
            outage.failed(redis.ConnectionError("Connection refused"))
            beats += 1
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        outage.answered()
        outage.answered()  # once back, nothing more to say
    said = [r.getMessage() for r in caplog.records if r.name == log.name]
    # once, again each 0.3 s while it lasts (not each of the 50+ beats), once when back
    assert 3 <= len(said) <= 2 + elapsed / 0.3 < beats, said
    assert said[0].startswith("Redis at redis://:***@127.0.0.1:1/0 does not answer")
    assert "still does not answer" in said[1] and "answers again" in said[-1]
