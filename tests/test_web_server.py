"""The receiver under a real gunicorn, over real HTTP on loopback."""

import http.client
import json
import re
import subprocess
import sys
import time

import pytest
import requests

from worker.devtools.local import free_port

from .support import (
    LIVE_KEY,
    SIGNUP,
    SIGNUP_WEBHOOK_SECRET,
    at_once,
    queued,
    sign_standard,
    sign_stripe,
    stripe_event,
)


def post(web, route, body, headers):
    return requests.post(
        f"{web.url}/webhooks/{route}",
        data=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=10,
    )


@pytest.mark.slow
def test_signature_matrix_over_http(start_web, redis_client, settings):
    web = start_web()
    body = stripe_event("evt_http")
    now = int(time.time())
    cases = {
        "valid": (sign_stripe(body), 200),
        "wrong secret": (sign_stripe(body, "whsec_wrong"), 400),
        "tampered": (sign_stripe(body + b" "), 400),
        "stale": (sign_stripe(body, timestamp=now - 400), 400),
        "future": (sign_stripe(body, timestamp=now + 400), 400),
        "garbled": ("t=,v1=,,,==", 400),
    }
    for name, (header, status) in cases.items():
        r = post(web, "stripe", body, {"Stripe-Signature": header})
        assert r.status_code == status, (name, r.text)
        assert r.headers["Content-Type"] == "application/json"
        if status == 400:
            assert r.json()["error"]["type"] == "signature_verification_error"
    r = post(web, "stripe", body, {})
    assert r.status_code == 400 and "missing" in r.json()["error"]["message"]
    assert len(queued(redis_client, settings)) == 1


@pytest.mark.slow
def test_signup_both_header_families_over_http(start_web, redis_client, settings):
    web = start_web()
    assert post(web, "signup", SIGNUP, sign_standard(SIGNUP, "msg_a")).status_code == 200
    r = post(web, "signup", SIGNUP, sign_standard(SIGNUP, "msg_b", prefix="svix"))
    assert r.status_code == 200 and r.json()["id"] == "msg_b"
    bad = sign_standard(SIGNUP, "msg_c", secret="whsec_" + "QUJD" * 8)
    assert post(web, "signup", SIGNUP, bad).status_code == 400
    assert len(queued(redis_client, settings)) == 2


@pytest.mark.slow
def test_concurrent_duplicate_deliveries_over_http(start_web, redis_client, settings):
    web = start_web()
    body = stripe_event("evt_dup_http")
    header = sign_stripe(body)
    answers = at_once(12, lambda: post(web, "stripe", body, {"Stripe-Signature": header}).json())
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 11
    assert len(queued(redis_client, settings)) == 1


@pytest.mark.slow
def test_body_over_the_limit_is_413_before_it_is_read(start_web):
    web = start_web()
    body = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    r = post(web, "stripe", body, {"Stripe-Signature": sign_stripe(body)})
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_entity_too_large"


@pytest.mark.slow
def test_errors_are_json_never_500(start_web):
    web = start_web()
    assert requests.get(f"{web.url}/webhooks/stripe", timeout=5).status_code == 405
    assert requests.get(f"{web.url}/nope", timeout=5).json()["error"]["type"] == "not_found"
    r = post(web, "stripe", b"\xff" * 100, {"Stripe-Signature": "t=1,v1=00"})
    assert r.status_code == 400


@pytest.mark.slow
def test_redis_down_is_503_then_the_retry_goes_through(start_web, own_redis, settings):
    import redis as redis_lib

    local = settings.with_(redis_url=own_redis.url)
    web = start_web(local)
    body = stripe_event("evt_outage")
    assert requests.get(f"{web.url}/readyz", timeout=5).status_code == 200
    own_redis.stop()
    r = post(web, "stripe", body, {"Stripe-Signature": sign_stripe(body)})
    assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable"
    assert requests.get(f"{web.url}/readyz", timeout=5).status_code == 503
    own_redis.start()  # an empty Redis: nothing was marked, so the retry is queued
    r = post(web, "stripe", body, {"Stripe-Signature": sign_stripe(body)})
    assert r.status_code == 200 and r.json()["duplicate"] is False
    client = redis_lib.Redis.from_url(own_redis.url)
    assert len(queued(client, local)) == 1
    r = post(web, "stripe", body, {"Stripe-Signature": sign_stripe(body)})
    assert r.json()["duplicate"] is True


@pytest.mark.slow
def test_metrics_are_summed_across_gunicorn_workers(start_web):
    web = start_web()
    for i in range(6):
        body = stripe_event(f"evt_metric_{i}")
        post(web, "stripe", body, {"Stripe-Signature": sign_stripe(body)})
    text = requests.get(f"{web.url}/metrics", timeout=5).text
    assert 'stripe_worker_webhooks_total{outcome="accepted",route="stripe"} 6.0' in text


@pytest.mark.slow
def test_one_log_line_per_request_and_no_secret(start_web):
    web = start_web(STRIPE_SECRET_KEY=LIVE_KEY)
    body = stripe_event("evt_log")
    post(web, "stripe", body, {"Stripe-Signature": sign_stripe(body)})  # livemode mismatch
    post(web, "signup", SIGNUP, sign_standard(SIGNUP, "msg_log"))
    web.stop()  # every line it will ever write is in its log
    lines = [json.loads(line) for line in web.log().splitlines() if line.startswith("{")]
    assert [(line["route"], line["status"]) for line in lines] == [("stripe", 400), ("signup", 200)]
    assert lines[0]["outcome"] == "rejected_livemode_mismatch" and lines[0]["id"] is None
    log = web.log()
    for secret in (LIVE_KEY, SIGNUP_WEBHOOK_SECRET, "whsec_test_stripe"):
        assert secret not in log


@pytest.mark.slow
def test_a_route_without_its_secret_is_one_warning_at_start(start_web):
    web = start_web(SIGNUP_WEBHOOK_SECRET="")  # two gunicorn workers, one master
    answer = post(web, "signup", SIGNUP, sign_standard(SIGNUP, "msg_nosecret"))
    assert answer.status_code == 503 and "SIGNUP_WEBHOOK_SECRET" not in answer.text
    web.stop()
    warnings = [line for line in web.log().splitlines() if "answers 503 until" in line]
    assert len(warnings) == 1 and "/webhooks/signup" in warnings[0]
    assert "SIGNUP_WEBHOOK_SECRET" in warnings[0]


@pytest.mark.slow
def test_a_graceful_stop_closes_idle_keep_alive_connections_instead_of_waiting(start_web):
    # A read deadline past gunicorn's graceful_timeout (10 s): a worker that waited for an
    # idle connection would be killed by the master at that timeout, without "exiting".
    web = start_web(READ_TIMEOUT=60)
    idle = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
    idle.request("GET", "/healthz")
    answer = idle.getresponse()
    assert answer.status == 200 and answer.read() and not answer.will_close
    web.stop()  # SIGTERM, as a platform's deploy sends it
    assert idle.sock is not None and idle.sock.recv(1) == b""  # closed by the receiver
    idle.close()
    log = web.log()
    booted = re.findall(r"Booting worker with pid: (\d+)", log)
    assert len(booted) == 2 and set(re.findall(r"Worker exiting \(pid: (\d+)\)", log)) == set(
        booted
    )
    assert "Error handling request" not in log


GREEN_PROBE = """
import sys

import worker.__main__ as entry

try:
    entry.main(["web", "--help"])  # the patch `web` makes, then argparse's help and exit
except SystemExit:
    pass
import gevent
import redis
from redis.backoff import ConstantBackoff
from redis.retry import Retry

ticks = []


def tick():
    while True:
        ticks.append(1)
        gevent.sleep(0.05)


gevent.spawn(tick)
gevent.sleep(0)
refused = redis.Redis(port=int(sys.argv[1]), retry=Retry(ConstantBackoff(0.5), 3))
try:
    refused.ping()
except redis.ConnectionError:
    pass
print(len(ticks))
"""


@pytest.mark.slow
def test_web_patches_for_gevent_before_redis_binds_its_sleep():
    """`stripe-worker web` patches before anything imports redis-py (worker/__main__.py), so
    one connection's Redis retry backoff (1.5 s here) leaves the other greenlets running:
    some 30 ticks of 50 ms. Patched after redis-py bound `time.sleep` (in a Sentinel
    failover the slowest /healthz took 0.64 s against 0.01 s: bench/failover_run.py), they
    stop for the whole backoff: 4 ticks, one between each sleep."""
    probe = subprocess.run(
        [sys.executable, "-c", GREEN_PROBE, str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert int(probe.stdout.split()[-1]) >= 12, probe.stdout
