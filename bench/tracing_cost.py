"""What traces cost the receiver: signed signups through the real app (Flask's test client,
real Redis), tracing off and on (exporting to a local OTLP collector), side by side.

Each round runs in a fresh process (a process's tracer is set up once), off and on
alternating, so both see the same machine load; the figure is the ratio of the medians,
and the median of each round's on/off ratio.

    .venv/bin/python bench/tracing_cost.py [--requests 500] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

from bench.harness import Section, machine, render  # noqa: E402
from tests.support import clean_env  # noqa: E402
from tests.support.otlp import OtlpCollector  # noqa: E402

CHILD = """
import json, sys, time, uuid
import redis
from tests.support import SIGNUP_WEBHOOK_SECRET, sign_standard
from webhooks.app import create_app
from worker.settings import Settings
from worker.vault import Vault

n, prefix = int(sys.argv[1]), sys.argv[2]
settings = Settings.from_env(stream_prefix=prefix)
vault = Vault(None, {"SIGNUP_WEBHOOK_SECRET": SIGNUP_WEBHOOK_SECRET})
client = create_app(settings, vault=vault).test_client()
bodies = []
for i in range(n):
    data = {"user_id": f"u_{i}", "email": f"u{i}@example.com"}
    body = json.dumps({"type": "user.created", "data": data})
    bodies.append((body, sign_standard(body, msg_id=f"msg_{uuid.uuid4().hex}")))
for body, headers in bodies[:20]:  # warm: scripts loaded, connections made
    client.post("/webhooks/signup", data=body, headers=headers)
started = time.perf_counter()
for body, headers in bodies[20:]:
    assert client.post("/webhooks/signup", data=body, headers=headers).status_code == 200
print(json.dumps((time.perf_counter() - started) / (n - 20) * 1e6))
r = redis.Redis.from_url(settings.redis_url)
keys = list(r.scan_iter(f"{prefix}:*", count=1000))
for i in range(0, len(keys), 500):
    r.delete(*keys[i:i + 500])
"""


def one_round(requests: int, endpoint: str | None) -> float:
    env = clean_env(REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(requests), prefix],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    collector = OtlpCollector().start()
    off: list[float] = []
    on: list[float] = []
    try:
        for _ in range(args.rounds):
            off.append(one_round(args.requests, None))
            on.append(one_round(args.requests, collector.url))
    finally:
        collector.stop()
    spans = len(collector.spans())
    ratios = sorted(b / a for a, b in zip(off, on, strict=True))
    section = Section("What traces cost the receiver", "bench/tracing_cost.py")
    section.say(
        f"{args.requests} signed signups a round through the app, {args.rounds} rounds each, "
        "off and on alternating."
    )
    section.table(
        ("tracing", "µs per signup (median)", "rounds"),
        [
            ("off", f"{statistics.median(off):.0f}", " / ".join(f"{x:.0f}" for x in off)),
            ("on", f"{statistics.median(on):.0f}", " / ".join(f"{x:.0f}" for x in on)),
        ],
    )
    section.say(
        f"On/off: {statistics.median(on) / statistics.median(off):.2f} (medians), "
        f"{statistics.median(ratios):.2f} (median of the rounds' ratios); {spans} spans "
        "received by the collector."
    )
    print(f"Machine: {machine()}.\n")
    print(render([section]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
