"""The shipped alert rules (ops/prometheus/alerts.yml) and dashboard (ops/grafana/): valid for
Prometheus, each rule firing and staying quiet as its unit tests say (`promtool test rules`),
every expression naming only metrics that the real worker and receiver expose, and a real
Prometheus firing the right alerts on real processes."""

import base64
import json
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .support import SIGNUP, free_port, sign_standard, wait_for

OPS = Path(__file__).resolve().parent.parent / "ops"
RULES = OPS / "prometheus"
DASHBOARD = OPS / "grafana" / "stripe-worker.json"

# Metrics the rules and dashboard use that another issue's branch adds and main does not
# expose yet (their rules are in their own group): the lead drops an entry as it lands.
NOT_YET_EXPOSED: dict[str, set[str]] = {}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool absent (Debian: apt-get install prometheus)"
)


@needs_promtool
@pytest.mark.parametrize("verb", ["check", "test"])
def test_promtool(verb):
    target = "alerts.yml" if verb == "check" else "alerts_test.yml"
    done = subprocess.run(
        [PROMTOOL, verb, "rules", target], cwd=RULES, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def exposed(text: str) -> set[str]:
    """Every metric name a /metrics page declares, a labelled family with no sample yet too."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":  # what each of its samples will be named
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        names.update(s.name for s in family.samples)
    return names


@pytest.mark.slow
def test_rules_name_only_metrics_the_processes_expose(client, start_worker):
    port = free_port()
    start_worker("--concurrency=2", WORKER_METRICS_PORT=port)

    def worker_page() -> str | None:
        try:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except requests.ConnectionError:
            return None
        return text if "stripe_worker_live_workers" in text else None

    names = exposed(wait_for(worker_page, timeout=60))
    client.post("/webhooks/stripe", data=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
    names |= exposed(client.get("/metrics").get_data(as_text=True))
    pending = set().union(*NOT_YET_EXPOSED.values())
    assert not pending & names, f"arrived, drop from NOT_YET_EXPOSED: {sorted(pending & names)}"
    expressions = [r["expr"] for r in rules()] + [
        t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for t in panel["targets"]
    ]
    named = set(re.findall(r"stripe_worker_[a-z_]+", " ".join(expressions)))
    assert "stripe_worker_webhooks_total" in named and "stripe_worker_stripe_endpoint_pace" in named
    assert named - pending <= names, sorted(named - pending - names)


def rules() -> list[dict]:
    import yaml  # the test extra has PyYAML: the rules are Prometheus YAML

    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_says_what_to_do_and_is_tested_firing_and_not():
    import yaml

    tests = yaml.safe_load((RULES / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in rules():
        name = rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name} never fires in a test"
        assert any(not case.get("exp_alerts") for case in mine), f"{name} never stays quiet"


PROMETHEUS = shutil.which("prometheus")


def prometheus_config(tmp_path: Path, targets: list[str]) -> Path:
    """A config of the test's own: 1 s scrapes and rule evaluations, and the shipped rules
    with every `for:` rewritten to 0s, so an alert fires at the first evaluation that sees
    its condition (the shipped `for:` values are minutes; promtool's unit tests cover them).
    Config: https://prometheus.io/docs/prometheus/latest/configuration/configuration/"""
    import yaml

    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [{"job_name": "stripe-worker", "static_configs": [{"targets": targets}]}],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow(seconds=13)
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus absent (.ci/run installs it)")
def test_a_real_prometheus_fires_the_right_alerts(start_worker, start_web, tmp_path):
    from .support.processes import Process

    metrics_port = free_port()
    worker = start_worker(WORKER_METRICS_PORT=metrics_port)
    web = start_web()
    port = free_port()
    config = prometheus_config(tmp_path, [f"127.0.0.1:{metrics_port}", f"127.0.0.1:{web.port}"])
    prometheus = Process(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        {},
        tmp_path / "prometheus.log",
    ).start()
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list:
        try:
            answer = requests.get(api + "/query", params={"query": expr}, timeout=5).json()
        except requests.ConnectionError:
            return []
        return answer["data"]["result"]

    def firing() -> set[tuple[str, str]]:
        alerts = requests.get(api + "/alerts", timeout=5).json()["data"]["alerts"]
        return {(a["labels"]["alertname"], a["labels"].get("route", "")) for a in alerts}

    def evaluated_since(started: float) -> bool:
        groups = requests.get(api + "/rules", timeout=5).json()["data"]["groups"]
        return all(parsed(g["lastEvaluation"]) > started for g in groups)

    try:
        healthy = (
            "max(stripe_worker_live_workers) == 1 and max(stripe_worker_workers_not_consuming) == 0"
        )
        wait_for(lambda: query(healthy), timeout=40, interval=0.5)
        seen = time.time()
        wait_for(lambda: evaluated_since(seen + 1), timeout=20, interval=0.5)
        assert firing() == set(), "an alert fires while all is well"
        timeline = [("all well, no alert", time.time())]

        wrong = "whsec_" + base64.b64encode(b"not the receiver's secret!").decode()

        def rejected_fires() -> bool:
            answer = requests.post(
                web.url + "/webhooks/signup",
                data=SIGNUP,
                headers=sign_standard(SIGNUP, secret=wrong),
                timeout=10,
            )
            assert answer.status_code == 400, answer.text
            return ("StripeWorkerWebhookSignaturesRejected", "signup") in firing()

        wait_for(rejected_fires, timeout=30, interval=0.5)
        timeline.append(
            ("wrongly signed webhooks: StripeWorkerWebhookSignaturesRejected", time.time())
        )
        assert {name for name, _ in firing()} == {"StripeWorkerWebhookSignaturesRejected"}

        worker.kill()
        wait_for(
            lambda: ("StripeWorkerNoConsumingWorker", "") in firing(), timeout=30, interval=0.5
        )
        timeline.append(("worker killed: StripeWorkerNoConsumingWorker", time.time()))
        start = timeline[0][1]
        print("\n".join(f"+{at - start:5.1f} s  {what}" for what, at in timeline))
    finally:
        prometheus.stop()


def parsed(stamp: str) -> float:
    """The API's RFC 3339 time (nanoseconds, a zone) as a Unix time."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", stamp)).timestamp()
