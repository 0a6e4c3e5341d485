"""Hostile input, small: generated and set-piece requests at a real gunicorn."""

import pytest

from bench.fuzz_run import run_fuzz


@pytest.mark.slow
def test_no_5xx_and_nothing_queued_without_a_valid_live_signature(redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    report = run_fuzz(examples=400, say=lambda *_: None, slow=40, read_timeout=2)
    assert report.server_errors == 0, report.by_status
    assert report.valid_events_sent == 50
    assert report.hostile_sent == 40 and report.hostile_signups_accepted > 0
    assert report.tasks_queued == 50 + report.hostile_signups_accepted
    assert report.by_status[413] == 1
    assert report.slow_cut == report.slow_connections == 40
