"""Traces: one trace per delivery, from the receiver's request to the stream entry, exported
over OTLP/HTTP by the real processes to a real (local) collector; and, unset, nothing of
OpenTelemetry in either process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from worker.errors import SettingsError
from worker.settings import Settings
from worker.trail import Trail
from worker.work import Work

from .support import (
    SIGNUP,
    clean_env,
    entries,
    faults,
    free_port,
    fresh_env,
    post_signup,
    run_command,
    sign_standard,
    wait_for,
)
from .support.otlp import OtlpCollector
from .test_cli_errors import one_error_line

# What a process of the receiver and of the worker loads: the app made, the tasks' modules.
LOAD_BOTH = """
import sys
from webhooks.app import create_app
from worker.settings import Settings
from worker.vault import Vault
from tasks import worker_app
import tasks.launch, tasks.customers, tasks.recovery, tasks.metrics, tasks.publish
settings = Settings.from_env()
create_app(settings, vault=Vault(None, {}))
worker_app(settings)
"""


def modules_after(code: str, **env: str) -> set[str]:
    """The modules a fresh interpreter holds after `code`, in a clean environment."""
    out = subprocess.run(
        [sys.executable, "-c", code + "\nprint('\\n'.join(sys.modules))"],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(out.split())


def opentelemetry(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] == "opentelemetry"}


@pytest.mark.slow
def test_unset_neither_process_imports_opentelemetry(redis_url):
    # redis-py 8 probes for OpenTelemetry's metrics SDK when `redis` is imported (its own
    # optional metrics, off until an application initialises them): what it loads is
    # redis-py's. Ours adds nothing to it: no tracer, no exporter.
    by_redis = opentelemetry(modules_after("import sys, redis"))
    loaded = opentelemetry(modules_after(LOAD_BOTH, REDIS_URL=redis_url))
    assert loaded - by_redis == set()
    assert not {
        m for m in loaded if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter"))
    }
    # The same check sees them once an endpoint is set (the collector need not answer).
    loaded = modules_after(
        LOAD_BOTH, REDIS_URL=redis_url, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"
    )
    assert {"opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http"} <= loaded


def test_the_standard_variables_as_the_spec_reads_them():
    base = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert base.tracing and base.otlp_traces_url == "http://collector:4318/v1/traces"
    own = Settings.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example/custom",
        }
    )
    assert own.otlp_traces_url == "https://traces.example/custom"  # used as is, no suffix
    assert not Settings.from_env({}).tracing
    # Off by the spec's own switches too, endpoint or not (then setup imports nothing).
    for off in ({"OTEL_SDK_DISABLED": "TRUE"}, {"OTEL_TRACES_EXPORTER": "none"}):
        assert not Settings.from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **off}
        ).tracing
    assert Settings.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "1"}
    ).tracing
    # Another program's OTLP settings are not ours to refuse while we do not trace...
    assert not Settings.from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}).tracing
    # ...but asked to trace over a transport we do not ship, the start refuses in one line.
    for bad in (
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
        {"OTEL_TRACES_EXPORTER": "zipkin"},
    ):
        with pytest.raises(SettingsError, match="OTEL_"):
            Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", **bad})
    # The signal's own protocol wins over the general one (the exporter spec's precedence).
    Settings.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        }
    )


@pytest.mark.parametrize("command", ["worker", "web"])
def test_a_transport_we_do_not_ship_is_refused_at_start_in_one_line(tmp_path, command):
    args = [command] if command == "worker" else [command, "--port", str(free_port())]
    env = fresh_env(
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
    )
    line = one_error_line(run_command(*args, env=env, timeout=30), 2)
    assert "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf" in line


@pytest.mark.slow
def test_check_says_whether_the_collector_takes_spans(tmp_path, collector, redis_url):
    def traces_line(endpoint: str) -> str:
        env = fresh_env(tmp_path, REDIS_URL=redis_url, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        done = run_command("check", env=env, timeout=60)
        [line] = [line for line in done.stdout.splitlines() if " traces " in line]
        return line

    assert traces_line(collector.url).startswith("OK    traces")
    assert collector.requests == 1  # an empty export: no span
    dead = f"http://127.0.0.1:{free_port()}"
    line = traces_line(dead)
    assert line.startswith("FAIL  traces") and "does not answer" in line, line


WITHOUT_THE_EXTRA = """
import sys
sys.modules["opentelemetry"] = None  # as where the otel extra is not installed
from worker.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("command", ["worker", "web"])
def test_without_the_extra_an_endpoint_is_refused_in_one_line(tmp_path, redis_url, command):
    args = [command] if command == "worker" else [command, "--port", str(free_port())]
    env = fresh_env(tmp_path, REDIS_URL=redis_url, OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318")
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_EXTRA, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_error_line(done, 2)
    assert "pip install 'stripe-worker[otel]'" in line


def test_work_queued_again_from_the_ledger_stays_in_its_trace(app, redis_client, settings):
    """The ledger keeps the delivery's traceparent beside its work (tracing is off in this
    process, so the record is written as a traced receiver writes it)."""
    from tasks.ledger_sweep import requeue_lost
    from worker.queue import ledger_record

    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert post_signup(app.test_client()).status_code == 200
    keys = settings.keys
    [delivery] = redis_client.zrange(keys.ledger, 0, -1)
    record = json.loads(redis_client.hget(keys.ledger_work, delivery))
    work = Work.from_json(record["work"])
    redis_client.hset(keys.ledger_work, delivery, ledger_record(work, "gone", traceparent))
    assert redis_client.delete(keys.queue) == 1  # the message is lost
    assert requeue_lost(redis_client, settings, older_than=0) == [delivery]
    [raw] = redis_client.lrange(keys.queue, 0, -1)
    assert json.loads(raw)["headers"]["traceparent"] == traceparent
    assert json.loads(redis_client.hget(keys.ledger_work, delivery))["traceparent"] == traceparent


@pytest.fixture
def collector():
    server = OtlpCollector().start()
    yield server
    server.stop()


WEB, WORKER = "stripe-worker-web", "stripe-worker-worker"


def assert_names(traceparent, span):
    """`traceparent` names `span`, sampled (flags: bit 0 sampled; the SDK also sets Trace
    Context Level 2's bit 1, a random trace id)."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, trace_id, span_id) == ("00", span.trace_id, span.span_id)
    assert int(flags, 16) & 1


def one(spans, name):
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_one_trace_from_the_webhook_to_the_stream_entry(
    pool, collector, start_web, start_worker, redis_client, settings, emulator
):
    # Defaults otherwise: each process's BatchSpanProcessor exports every 5 s. Under
    # prefork the tracer is made before the fork and runs in the pool's child (the SDK
    # starts its export thread again there).
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    start_worker(f"--pool={pool}", "--concurrency=2", **otel)
    web = start_web(**otel)
    faults(emulator, status=500, count=1)  # the first attempt fails: the retry is traced too

    answer = requests.post(
        web.url + "/webhooks/signup",
        data=SIGNUP,
        headers=sign_standard(SIGNUP, msg_id="msg_traced"),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    stream = settings.keys.stream("customers")
    entry = wait_for(lambda: redis_client.xrange(stream), timeout=30)[0][1]

    def whole_trace():
        published = [s for s in collector.spans() if s.name == "publish customers"]
        return collector.spans(published[0].trace_id) if published else None

    def web_spans_too():
        spans = wait_for(whole_trace, timeout=40, interval=0.2)
        return spans if {s.service for s in spans} == {WEB, WORKER} else None

    spans = wait_for(web_spans_too, timeout=40, interval=0.2)
    request = one(spans, "POST /webhooks/signup")
    enqueue = one(spans, "enqueue stripe_worker.create_customer")
    publish = one(spans, "publish customers")
    runs = sorted(
        (s for s in spans if s.name == "run stripe_worker.create_customer"),
        key=lambda s: s.attributes["stripe_worker.attempt"],
    )
    calls = [s for s in spans if s.name == "stripe customers.create"]
    print(f"trace {request.trace_id}, as the collector received it:")  # the Show
    for s in spans:
        shown = {k: v for k, v in s.attributes.items() if k.startswith(("http.", "stripe"))}
        print(s.service, s.kind, repr(s.name), s.span_id, "<-", s.parent_span_id or "-", shown)

    # The receiver's process: the request is the trace's root, the enqueue inside it.
    assert (request.service, request.kind, request.parent_span_id) == (WEB, "server", "")
    assert request.attributes["http.response.status_code"] == 200
    assert (enqueue.service, enqueue.kind, enqueue.parent_span_id) == (
        WEB,
        "producer",
        request.span_id,
    )
    # The worker's process: each attempt continues from the enqueue (the message's header,
    # which Celery keeps on the retry it queues), with its own Stripe call.
    assert [(r.service, r.kind, r.parent_span_id, r.error) for r in runs] == [
        (WORKER, "consumer", enqueue.span_id, True),
        (WORKER, "consumer", enqueue.span_id, False),
    ]
    # The retry's reason, as an exception event: type and redacted message, no traceback.
    [(event, recorded)] = runs[0].events
    assert (event, recorded["exception.type"]) == ("exception", "Retry")
    assert "exception.stacktrace" not in recorded
    by_parent = {c.parent_span_id: c for c in calls}
    assert sorted(by_parent) == sorted(r.span_id for r in runs)
    failed, succeeded = (by_parent[r.span_id] for r in runs)
    assert (failed.kind, failed.attributes["http.response.status_code"], failed.error) == (
        "client",
        500,
        True,
    )
    assert (succeeded.attributes["http.response.status_code"], succeeded.error) == (200, False)
    assert "?" not in succeeded.attributes["url.full"]
    assert succeeded.attributes["stripe.request_id"]  # what Stripe's support asks for
    # The publish is the last attempt's; the entry names it, so an agent continues from it.
    assert (publish.kind, publish.parent_span_id) == ("producer", runs[1].span_id)
    assert publish.attributes["messaging.destination.name"] == stream
    # `stripe-worker trace msg_traced` names the trace at every step.
    [found] = Trail(redis_client, settings).find("msg_traced")
    assert {line["trace"] for line in found.lines} == {request.trace_id}
    assert len(found.lines) >= 3  # received, retried, published
    assert_names(entry["traceparent"], publish)
    assert len(spans) == 7


@pytest.mark.slow
def test_a_quarantined_message_stays_in_the_trace_it_names(
    collector, start_worker, redis_client, settings
):
    from .test_poison import poison

    trace_id = "0af7651916cd43dd8448eb211c80319c"
    raw = json.loads(poison(b"not json {"))
    raw["headers"]["traceparent"] = f"00-{trace_id}-b7ad6b7169203331-01"
    start_worker(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url)
    redis_client.lpush(settings.keys.queue, json.dumps(raw))

    def quarantined():
        spans = collector.spans(trace_id)
        return spans if {s.name for s in spans} >= {"quarantine", "publish errors"} else None

    spans = wait_for(quarantined, timeout=40, interval=0.2)
    publish = one(spans, "publish errors")
    assert one(spans, "quarantine").parent_span_id == "b7ad6b7169203331"
    assert publish.parent_span_id == one(spans, "quarantine").span_id
    [entry] = entries(redis_client, settings, "errors")
    assert_names(entry["traceparent"], publish)


def test_untraced_entries_carry_no_traceparent(app, start_inprocess_worker, redis_client, settings):
    """Tracing is off in the test process: the field is absent, not empty."""
    assert post_signup(app.test_client()).status_code == 200
    start_inprocess_worker()
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"))
    assert "traceparent" not in entry


@pytest.mark.slow
def test_a_collector_that_does_not_answer_costs_no_delivery(
    start_web, start_worker, redis_client, settings
):
    # Stopping, each process tries its last batch for up to OTEL_EXPORTER_OTLP_TIMEOUT
    # (10 s by default, read by the SDK): 2 s keeps the test's teardown short.
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
    }
    start_worker(**otel)
    web = start_web(**otel)
    for n in range(3):
        body = SIGNUP.replace(b"u_123", f"u_{n}".encode())
        answer = requests.post(
            web.url + "/webhooks/signup",
            data=body,
            headers=sign_standard(body, msg_id=f"msg_dead_{n}"),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
    wait_for(lambda: len(entries(redis_client, settings, "customers")) == 3)
    assert all(e["traceparent"] for e in entries(redis_client, settings, "customers"))


RAISE_IN_A_SPAN = """
import contextlib
from worker import tracing
from worker.settings import Settings
tracing.setup(Settings.from_env(), "secret-test")
with contextlib.suppress(ValueError), tracing.span("fails"):
    try:
        raise KeyError("sk_live_51HxYzChainedSecretValue00")
    except KeyError:
        raise ValueError("Invalid API Key provided: sk_live_51HxYzTestOnlyNotARealKey00")
tracing.flush()
"""


def test_an_exception_in_a_span_is_exported_redacted_without_its_traceback(collector):
    subprocess.run(
        [sys.executable, "-c", RAISE_IN_A_SPAN],
        env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url),
        check=True,
        timeout=60,
    )
    [span] = collector.spans()
    [(_event, recorded)] = span.events
    assert recorded == {
        "exception.type": "ValueError",
        "exception.message": "Invalid API Key provided: sk_live_[redacted]",
    }
    assert span.error and span.attributes["error.type"] == "ValueError"
