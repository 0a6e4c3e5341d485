"""The shipped alert rules (ops/prometheus/alerts.yml): valid for Prometheus, each firing and
staying quiet as its unit tests say (`promtool test rules`), and naming only metrics that the
real worker and receiver expose."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .support import free_port, wait_for

RULES = Path(__file__).resolve().parent.parent / "ops" / "prometheus"
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
        names.update(s.name for s in family.samples)
    return names


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
    named = set(re.findall(r"stripe_worker_[a-z_]+", (RULES / "alerts.yml").read_text()))
    assert named and named <= names, sorted(named - names)
