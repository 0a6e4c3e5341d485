"""What the tests and the benchmarks share; conftest.py holds only fixtures.

    signing       the test keys and webhook secrets; sign_stripe, sign_standard
    deliveries    SIGNUP, stripe_event, post_stripe and post_signup (Flask test client);
                  event_work and enqueue (work queued as the receiver does)
    waiting       wait_for (poll a condition), wait_http, at_once (n threads released together)
    redis_server  RedisServer (a Redis of a test's own), shared_redis (the run's)
    processes     Process, WorkerProcess, WebProcess, cli, clean_env, worker_env, FAST_WORKER
    inprocess     InProcessWorker: the worker on a thread, where a process adds nothing
    observe       faults, emulator_stats, entries, queued, settled
    shell         fresh_env, run_command (run_in_process where no process is needed),
                  start_dev, group_alive: the CLI as a user types it
    sentinel      SentinelCluster: a master, a replica and three sentinels (import it from
                  tests.support.sentinel)
    leftovers     the run's own Redis database and TMPDIR, and what was left in them
                  (tests/conftest.py fails the run on it)
    schedule      dealt: the order the run starts its tests in (longest first, dealt out)

Nothing here imports pytest, so bench/ uses it as a plain package.
"""

from worker.devtools.local import free_port

from .deliveries import (
    SIGNUP,
    enqueue,
    event_work,
    post_signup,
    post_stripe,
    signup_over_http,
    signup_work,
    stripe_event,
)
from .inprocess import InProcessWorker
from .observe import emulator_stats, entries, faults, queued, settled
from .processes import (
    FAST_WORKER,
    Process,
    WebProcess,
    WorkerProcess,
    clean_env,
    cli,
    compile_project,
    worker_env,
)
from .redis_server import RedisServer, shared_redis
from .shell import fresh_env, group_alive, run_command, run_in_process, start_dev
from .signing import (
    LIVE_KEY,
    SIGNUP_WEBHOOK_SECRET,
    STRIPE_WEBHOOK_SECRET,
    TEST_KEY,
    sign_standard,
    sign_stripe,
)
from .waiting import at_once, http_answers, wait_for, wait_http

__all__ = [
    "FAST_WORKER",
    "LIVE_KEY",
    "SIGNUP",
    "SIGNUP_WEBHOOK_SECRET",
    "STRIPE_WEBHOOK_SECRET",
    "TEST_KEY",
    "InProcessWorker",
    "Process",
    "RedisServer",
    "WebProcess",
    "WorkerProcess",
    "at_once",
    "clean_env",
    "cli",
    "compile_project",
    "emulator_stats",
    "enqueue",
    "entries",
    "event_work",
    "faults",
    "free_port",
    "fresh_env",
    "group_alive",
    "http_answers",
    "post_signup",
    "post_stripe",
    "queued",
    "run_command",
    "run_in_process",
    "settled",
    "shared_redis",
    "sign_standard",
    "sign_stripe",
    "signup_over_http",
    "signup_work",
    "start_dev",
    "stripe_event",
    "wait_for",
    "wait_http",
    "worker_env",
]
