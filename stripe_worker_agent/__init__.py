"""What an agent needs to read stripe-worker's streams, under a name of its own.

    from stripe_worker_agent import Entry, StreamConsumer, redis_from_env, stream_key

The wheel installs the project's code as `worker`, `tasks` and `webhooks`; an agent project
with a `worker.py` or `tasks.py` of its own (the usual Celery layout) shadows those names,
since the script's folder comes first on sys.path. So this package imports nothing of them:
only redis-py and the standard library (tests/test_layering.py holds it to that), and the
project's base (worker/) imports it.
"""

from stripe_worker_agent.connection import redis_from_env, stream_key
from stripe_worker_agent.consumer import Entry, RunStats, StreamConsumer, dead_letter

__all__ = ["Entry", "RunStats", "StreamConsumer", "dead_letter", "redis_from_env", "stream_key"]
