"""The fault run, small: crashes, a crash loop, a receiver restart, a Redis outage, 30% Stripe
faults; default settings but for a shorter retry backoff, so the suite stays fast."""

import pytest

from bench.fault_run import run_fault


@pytest.mark.slow(seconds=17)
def test_every_signup_is_one_customer_and_one_entry():
    report = run_fault(
        signups=60,
        kill_every=20,
        fail_rate=0.3,
        outage_s=2.0,
        crash_loop_s=10,
        say=lambda *_: None,
        RETRY_BASE_DELAY="0.2",
        RETRY_MAX_DELAY="2",
    )
    assert report.crash_loop_kills >= 3 and report.receiver_restarts == 1
    assert report.ok, report
