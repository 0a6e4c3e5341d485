"""The `stripe-worker` command: parses the arguments and dispatches to worker/commands.py."""

from __future__ import annotations

import argparse
import sys

from worker import commands as cmd
from worker.errors import QueueUnavailable, StripeCallError, StripeWorkerError
from worker.keys import STREAMS


def _rate_limit(value: str) -> str:
    """The emulator's --rate-limit: 'stripe', or requests per second."""
    if value == "stripe" or value.replace(".", "", 1).isdigit():
        return value
    raise argparse.ArgumentTypeError("use 'stripe' or a number of requests per second")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stripe-worker",
        description="Webhook worker between Stripe, your app and your agents.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one component (SPEC.json, or - for stdin)")
    run.add_argument("spec", metavar="SPEC.json")
    run.add_argument(
        "--retries",
        type=int,
        default=2,
        help="network retries of temporary errors (default 2, same idempotency key)",
    )
    run.add_argument(
        "--queue",
        action="store_true",
        help="hand it to the worker instead; the result goes to the streams",
    )
    run.add_argument("--id", help="with --queue: the source id (default: a hash of the spec)")
    run.set_defaults(func=cmd.cmd_run)

    import os

    dev = sub.add_parser("dev", help="receiver, worker and emulator in one process, for trying")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    dev.add_argument("--concurrency", type=int, default=4)
    dev.set_defaults(func=cmd.cmd_dev)

    web = sub.add_parser("web", help="serve the webhook receiver under gunicorn")
    web.add_argument("--host", default="0.0.0.0")
    web.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    web.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY") or 2))
    web.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("WEB_THREADS") or 4),
        help="threads per worker (gthread) when above 1",
    )
    web.set_defaults(func=cmd.cmd_web)

    wrk = sub.add_parser("worker", help="run the Celery worker")
    wrk.add_argument(
        "--concurrency",
        type=int,
        help="default: WORKER_CONCURRENCY (64 threads; prefork: one per core)",
    )
    wrk.add_argument(
        "--pool",
        choices=("threads", "prefork", "solo"),
        help="default: WORKER_POOL (threads)",
    )
    wrk.add_argument("--loglevel", default="INFO")
    wrk.set_defaults(func=cmd.cmd_worker)

    check = sub.add_parser("check", help="check Redis, secrets, key mode and Stripe")
    check.set_defaults(func=cmd.cmd_check)

    send = sub.add_parser("send", help="post a correctly signed test event to a receiver")
    send.add_argument("kind", choices=("signup", "stripe"))
    send.add_argument(
        "type",
        nargs="?",
        help="for stripe: "
        + ", ".join(("customer.created", "checkout.session.completed", "invoice.payment_failed")),
    )
    send.add_argument("--email")
    send.add_argument("--name")
    send.add_argument("--user-id")
    send.add_argument("--customer", help="for stripe: name this customer instead of making one")
    send.add_argument("--url", help="the receiver (default: the running dev's, else :8000)")
    send.set_defaults(func=cmd.cmd_send)

    dlq = sub.add_parser("dlq", help="list and replay failures of the errors stream")
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("ids", nargs="*", metavar="ID", help="error entry ids to replay")
    dlq.add_argument("--all", action="store_true", help="replay every failure not replayed yet")
    dlq.add_argument("--count", type=int, default=1000, help="newest entries to look at")
    dlq.add_argument("--json", action="store_true")
    dlq.set_defaults(func=cmd.cmd_dlq)

    tail = sub.add_parser("tail", help="show a stream's entries as they arrive")
    tail.add_argument("stream", help="customers, events, errors (or a full key)")
    tail.add_argument("--group", help="read as this consumer group, acknowledging each entry")
    tail.add_argument("--consumer", help="consumer name within the group (default: tail)")
    tail.add_argument("--from-start", action="store_true", help="begin at the oldest entry")
    tail.add_argument("--count", type=int, help="stop after this many entries")
    tail.add_argument("--json", action="store_true", help="one JSON object a line")
    tail.set_defaults(func=cmd.cmd_tail)

    schema = sub.add_parser("schema", help="print the JSON Schema of a stream's entries")
    schema.add_argument("stream", choices=STREAMS)
    schema.set_defaults(func=cmd.cmd_schema)

    emu = sub.add_parser("emulator", help="serve the local Stripe API emulator")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=12111)
    emu.add_argument(
        "--key",
        action="append",
        help="accept only this API key (repeatable); default: any well-formed key",
    )
    emu.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    emu.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests failed")
    emu.add_argument("--fail-status", type=int, default=500, choices=(500, 429, 503))
    emu.add_argument(
        "--rate-limit",
        default="0",
        type=_rate_limit,
        help="answer 429 like Stripe above this many requests/s per key mode; "
        "'stripe' = Stripe's own (25 test, 100 live); default 0 = none",
    )
    emu.set_defaults(func=cmd.cmd_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import redis

    try:
        return int(args.func(args) or 0)
    except (StripeCallError, QueueUnavailable) as exc:
        cmd.print_json({"error": exc.to_dict()}, sys.stderr)
        return 1
    except StripeWorkerError as exc:  # a bad spec, setting or secret: the user's to fix
        cmd.print_json({"error": exc.to_dict()}, sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"Redis at REDIS_URL does not answer ({exc.__class__.__name__})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
