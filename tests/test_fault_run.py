"""The fault run, small: crashes, a receiver restart, a Redis outage, 30% Stripe faults."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fault_run import run_fault


def test_every_signup_is_one_customer_and_one_entry():
    report = run_fault(signups=60, kill_every=20, fail_rate=0.3, outage_s=2.0, say=lambda *_: None)
    assert report.worker_kills >= 2 and report.receiver_restarts == 1
    assert report.ok, report
