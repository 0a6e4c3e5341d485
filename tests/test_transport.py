"""worker/transport.py on a real worker: a message that is not an envelope cannot stop it."""

import pytest

from .support import entries, post_signup, wait_for

pytestmark = pytest.mark.slow


def test_a_message_that_is_not_an_envelope_is_quarantined_and_the_worker_goes_on(
    app, start_worker, redis_client, settings
):
    garbage = [b"not json at all", b'{"json": "but no properties"}', b"\xff\xfe"]
    for raw in garbage:
        redis_client.lpush(settings.keys.queue, raw)
    post_signup(app.test_client())  # queued behind the garbage
    worker = start_worker()
    wait_for(lambda: entries(redis_client, settings, "customers"))
    assert worker.proc.poll() is None
    quarantined = wait_for(lambda: redis_client.llen(settings.keys.poison) == 3)
    assert quarantined
    raw_client = redis_client.__class__.from_url(settings.redis_url)
    assert sorted(raw_client.lrange(settings.keys.poison, 0, -1)) == sorted(garbage)
    assert redis_client.llen(settings.keys.queue) == 0
