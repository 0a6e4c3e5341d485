"""What every command-line process shares: how it ends on an error (one line on stderr, or
with --json one JSON object, and an exit status), and, for scripts such as
examples/agent.py, the settings every command works against."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from worker.errors import (
    NotReplicated,
    QueueUnavailable,
    ReceiverUnreachable,
    StripeCallError,
    StripeWorkerError,
)

# A failed operation exits 1; every other error of ours is the user's to fix (usage,
# configuration, a bad spec or secret) and exits 2, as argparse does.
FAILED_OPERATION = (StripeCallError, QueueUnavailable, ReceiverUnreachable, NotReplicated)


def error_report(exc: BaseException, redis_url: str | None, as_json: bool) -> tuple[str, int]:
    """(what to print on stderr, exit status) for an error that ends a command."""
    import redis

    if isinstance(exc, StripeWorkerError):
        status = 1 if isinstance(exc, FAILED_OPERATION) else 2
        if as_json:
            return json.dumps({"error": exc.to_dict()}), status
        # One line, whatever the message: the SDK's own span several.
        return "error: " + " ".join(exc.message.split()), status
    assert isinstance(exc, redis.RedisError)
    from worker.redact import redact, redact_url
    from worker.redis_problems import tls_problem

    url = redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    where = redact_url(url)
    tls = tls_problem(exc, url)
    if tls:
        message = tls
    elif isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        message = (
            f"Redis at {where} does not answer ({exc.__class__.__name__}); hint: start "
            "`stripe-worker dev` (it embeds one), or set REDIS_URL to a Redis that answers"
        )
    else:
        message = f"Redis at {where} refused: {redact(str(exc))}"
    if as_json:
        return json.dumps({"error": {"type": "redis_error", "message": message}}), 1
    return f"error: {message}", 1


def tool_settings() -> Any:
    """Settings for a script run from a shell, such as examples/agent.py: found as every
    command finds them (a running `dev` included, said in one line), and, like a command,
    ended by an absent Redis or Ctrl-C in one line or none, never a traceback."""
    import redis

    from worker.devtools.dev_state import find_target

    try:
        found = find_target()
    except StripeWorkerError as exc:
        print(error_report(exc, None, False)[0], file=sys.stderr)
        raise SystemExit(2) from None
    default_hook = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        if isinstance(exc, KeyboardInterrupt):
            return
        if isinstance(exc, redis.RedisError | StripeWorkerError):
            print(error_report(exc, found.settings.redis_url, False)[0], file=sys.stderr)
            return
        default_hook(kind, exc, tb)

    sys.excepthook = hook
    return found.settings
