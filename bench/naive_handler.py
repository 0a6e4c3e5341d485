"""The baseline: what a user writes instead (verify with the SDK, call Stripe inline in the
handler), next to the receiver, measured by the same client in the same run.

    .venv/bin/python bench/naive_handler.py           # 10 s a row
    .venv/bin/python bench/naive_handler.py --quick   # 4 s a row
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.harness import KEY, WHSEC, Section, Stack, load, run_scenario, stripe_request
from tests.support import Process, wait_http
from worker.devtools.emulator import EmulatorServer
from worker.devtools.local import free_port

NAIVE_APP = """
import json, os, stripe
from flask import Flask, request
app = Flask(__name__)
client = stripe.StripeClient(os.environ["STRIPE_SECRET_KEY"],
                             base_addresses={"api": os.environ["STRIPE_API_BASE"]})

@app.post("/webhooks/stripe")
def hook():
    event = stripe.Webhook.construct_event(request.get_data(),
                                           request.headers["Stripe-Signature"],
                                           os.environ["STRIPE_WEBHOOK_SECRET"])
    client.v1.customers.create(params={"email": "naive@example.com",
                                       "metadata": {"event": event.id}})
    return {"received": True}
"""


def naive(seconds: float, latency_ms: float) -> dict:
    emulator = EmulatorServer("127.0.0.1", 0).start()
    emulator.state.set_faults({"latency_ms": latency_ms})
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="naive-"))
    (folder / "naive_app.py").write_text(NAIVE_APP)
    env = dict(
        os.environ,
        STRIPE_SECRET_KEY=KEY,
        STRIPE_API_BASE=emulator.url,
        STRIPE_WEBHOOK_SECRET=WHSEC,
        PYTHONPATH=str(folder),
    )
    proc = Process(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "naive_app:app"],
        env,
        folder / "gunicorn.log",
        cwd=str(folder),
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/", any_answer=True)
        return load(port, stripe_request, seconds)
    finally:
        proc.stop(30)
        emulator.stop()
        shutil.rmtree(folder, ignore_errors=True)


def receiver(seconds: float) -> dict:
    stack = Stack(f"benchnaive{os.getpid()}")
    try:
        return load(stack.port, stripe_request, seconds)
    finally:
        stack.stop()


def measure(quick: bool) -> Section:
    seconds = 4 if quick else 10
    rows = [
        ("stripe-worker receiver (queue, answer)", receiver(seconds)),
        ("naive, emulator at 0 ms", naive(seconds, 0)),
        ("naive, emulator at 300 ms", naive(seconds, 300)),
    ]
    section = Section(
        "Baseline: a naive Flask handler (SDK verify + Stripe call inline)",
        "bench/naive_handler.py",
    )
    section.table(
        ("handler", "req/s", "p50 ms", "p99 ms", "answers"),
        [
            (name, f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", r["statuses"])
            for name, r in rows
        ],
    )
    ours, slow = rows[0][1]["rps"], rows[2][1]["rps"]
    section.say(
        f"4 keep-alive Python clients, {seconds} s a row. With Stripe taking 300 ms the naive "
        f"handler answers {slow:,.0f} req/s, {ours / slow:,.0f} times fewer than the receiver: "
        "it holds a gunicorn worker for the whole Stripe call, and a failure there is a failed "
        "webhook for Stripe to retry."
    )
    return section


def main() -> int:
    return run_scenario(measure, __doc__)


if __name__ == "__main__":
    sys.exit(main())
