"""The `stripe-worker` command: parses the arguments, dispatches to worker/*commands.py, and
turns every error into one line on stderr (or, with --json, one JSON object)."""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from worker import commands as cmd
from worker import serve_commands as serve
from worker.cli_process import error_report
from worker.errors import StripeWorkerError
from worker.keys import STREAMS
from worker.ops_commands import add_commands as add_ops_commands


def _rate_limit(value: str) -> str:
    """The emulator's --rate-limit: 'stripe', or requests per second."""
    if value == "stripe" or value.replace(".", "", 1).isdigit():
        return value
    raise argparse.ArgumentTypeError("use 'stripe' or a number of requests per second")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake in one line, as every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _version() -> str:
    try:
        return version("stripe-worker")
    except PackageNotFoundError:
        return "unknown"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw and raw.isdigit() else default


def _port(value: str) -> int:
    from worker.errors import SettingsError
    from worker.settings import port_number

    try:
        return port_number(value, "--port")
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(exc.message.removeprefix("--port ")) from None


def build_parser() -> Parser:
    parser = Parser(
        prog="stripe-worker",
        description="Webhook worker between Stripe, your app and your agents.",
        epilog="Beside a running `stripe-worker dev`, every command uses its Redis, "
        "secrets and emulator, and says so in one line on stderr.",
    )
    parser.add_argument("--version", action="version", version=f"stripe-worker {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, details: str = "") -> Parser:
        return sub.add_parser(
            name, help=summary, description=f"{summary[0].upper()}{summary[1:]}. {details}".strip()
        )

    run = command(
        "run",
        "run one component (SPEC.json, or - for stdin)",
        "Prints its outputs as JSON and exits 0; a Stripe error exits 1, a bad spec 2, "
        "checked before any network call.",
    )
    run.add_argument("spec", metavar="SPEC.json", help="the component's JSON file, or - for stdin")
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
    run.add_argument("--json", action="store_true", help='errors as {"error": {...}} on stderr')
    run.set_defaults(func=cmd.cmd_run)

    dev = command(
        "dev",
        "receiver, worker and emulator in one process, for trying",
        "Each missing piece (Redis, Stripe key, webhook secrets) gets an embedded default, "
        "announced in one line. Ctrl-C stops everything.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="the receiver's address")
    dev.add_argument(
        "--port",
        type=_port,
        help="the receiver's port (PORT, else 8000, or a free one if 8000 is taken); "
        "given, a taken port is refused",
    )
    dev.add_argument("--concurrency", type=int, default=4, help="worker threads (default 4)")
    dev.set_defaults(func=serve.cmd_dev)

    web = command("web", "serve the webhook receiver under gunicorn", "For deployment.")
    web.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    web.add_argument("--port", type=_port, help="port (PORT, 8000)")
    web.add_argument(
        "--workers",
        type=int,
        default=_env_int("WEB_CONCURRENCY", 2),
        help="gunicorn worker processes (WEB_CONCURRENCY, 2)",
    )
    web.add_argument(
        "--connections",
        type=int,
        default=_env_int("WEB_CONNECTIONS", 1000),
        help="connections each gevent worker holds at once (WEB_CONNECTIONS, 1000)",
    )
    web.set_defaults(func=serve.cmd_web)

    wrk = command("worker", "run the Celery worker", "For deployment.")
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
    wrk.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING... (default INFO)")
    wrk.set_defaults(func=serve.cmd_worker)

    check = command(
        "check",
        "check Redis, secrets, key mode and Stripe",
        "One OK/FAIL line each; exits 1 when anything fails.",
    )
    check.set_defaults(func=cmd.cmd_check)

    send = command(
        "send",
        "post a correctly signed test event to a receiver",
        "`send signup` posts a user.created as your auth system does: each one is a new user "
        "(a made-up user id), so the same email twice makes two customers unless --user-id "
        "is reused. `send stripe TYPE` works like `stripe trigger`: it makes the customer "
        "through the Stripe API, then posts the event.",
    )
    send.add_argument("kind", choices=("signup", "stripe"), help="which receiver route")
    send.add_argument(
        "type",
        nargs="?",
        help="for stripe: "
        + ", ".join(("customer.created", "checkout.session.completed", "invoice.payment_failed")),
    )
    send.add_argument("--email", help="for signup: the new user's email (required)")
    send.add_argument("--name", help="for signup: the user's name")
    send.add_argument(
        "--user-id",
        help="for signup: the user's id (default: a new one each time; reuse it to send the "
        "same user again)",
    )
    send.add_argument(
        "--webhook-id",
        help="for signup: the delivery's webhook-id (default: a new one; reuse it to send a "
        "duplicate delivery)",
    )
    send.add_argument(
        "--metadata",
        action="append",
        metavar="KEY=VALUE",
        help="for signup: metadata for the customer (repeatable)",
    )
    send.add_argument("--customer", help="for stripe: name this customer instead of making one")
    send.add_argument(
        "--url", help="the receiver (default: the running dev's, else 127.0.0.1:PORT or :8000)"
    )
    send.set_defaults(func=cmd.cmd_send)

    dlq = command(
        "dlq",
        "list and replay failures of the errors stream",
        "A replay queues the work again with its original idempotency key; replaying an "
        "entry twice queues it once.",
    )
    dlq.add_argument("action", choices=("list", "replay"), help="list, or replay")
    dlq.add_argument("ids", nargs="*", metavar="ID", help="error entry ids to replay")
    dlq.add_argument(
        "--all", action="store_true", help="replay every failure not replayed yet, however many"
    )
    dlq.add_argument("--count", type=int, default=1000, help="list: newest entries to show")
    dlq.add_argument("--json", action="store_true", help="one JSON object a line; errors too")
    dlq.set_defaults(func=cmd.cmd_dlq)

    add_ops_commands(command)  # status, trace

    rec = command(
        "reconcile",
        "queue the Stripe events the receiver never got, oldest first",
        "Lists Stripe's events (GET /v1/events; Stripe keeps 30 days) and queues each one "
        "through the same dedupe step as a delivery: a later delivery of it is a duplicate, "
        "and one queued or processed before is skipped. Prints how many it listed, queued and "
        "skipped; running it twice queues nothing. Without --since or --from: all 30 days.",
    )
    rec.add_argument("--since", metavar="DURATION", help="this far back: 90s, 30m, 2h, 3d")
    rec.add_argument(
        "--from", dest="from_id", metavar="EVENT_ID", help="the events after this event"
    )
    rec.add_argument(
        "--account", default="", metavar="ACCT", help="a connected account's events (Connect)"
    )
    rec.set_defaults(func=cmd.cmd_reconcile)

    tail = command(
        "tail",
        "show a stream's last entries, then follow it",
        "Like `tail -f`. Errors show their type, Stripe's status and the message. "
        "With --group it reads as a consumer of that group, and acknowledges only with --ack.",
    )
    tail.add_argument("stream", help="customers, events or errors")
    start = tail.add_mutually_exclusive_group()
    start.add_argument(
        "--last",
        type=int,
        metavar="N",
        help="show the last N entries first (10, or --count if fewer)",
    )
    start.add_argument("--from-start", action="store_true", help="show every entry first")
    start.add_argument("--new", action="store_true", help="show only entries that arrive")
    tail.add_argument("--group", help="read as a consumer of this consumer group")
    tail.add_argument("--consumer", default="tail", help="consumer name in the group (tail)")
    tail.add_argument(
        "--ack",
        action="store_true",
        help="with --group: acknowledge what is shown, so the group's other consumers never get it",
    )
    tail.add_argument("--count", type=int, help="stop after this many entries")
    tail.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --count: stop, exit 1, once no entry has come for this long (10)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON object a line; errors too")
    tail.set_defaults(func=cmd.cmd_tail)

    schema = command(
        "schema",
        "print the JSON Schema of a stream's entries",
        "The schema shipped in the package, for agents in any language.",
    )
    schema.add_argument("stream", choices=STREAMS, help="customers, events or errors")
    schema.set_defaults(func=cmd.cmd_schema)

    emu = command(
        "emulator",
        "serve the local Stripe API emulator",
        "Stripe's v1 customers API, for trying and testing without Stripe.",
    )
    emu.add_argument("--host", default="127.0.0.1", help="address to bind")
    emu.add_argument("--port", type=int, default=12111, help="port (default 12111)")
    emu.add_argument(
        "--key",
        action="append",
        help="accept only this API key (repeatable); default: any well-formed key",
    )
    emu.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    emu.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests failed")
    emu.add_argument(
        "--fail-status",
        type=int,
        default=500,
        choices=(500, 429, 503),
        help="status of the failed requests",
    )
    emu.add_argument(
        "--rate-limit",
        default="0",
        type=_rate_limit,
        help="answer 429 like Stripe above this many requests/s per key mode; "
        "'stripe' = Stripe's own (25 test, 100 live); default 0 = none",
    )
    emu.set_defaults(func=serve.cmd_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is serve.cmd_web:
        from worker.__main__ import patch_for_web

        patch_for_web()  # done already, before redis was imported, through `stripe-worker`
    import redis

    try:
        if args.func is not serve.cmd_emulator:
            from worker.settings import Settings

            Settings.from_env()  # every process refuses a bad setting first, in one line
        return int(args.func(args) or 0)
    except (StripeWorkerError, redis.RedisError) as exc:
        found = getattr(args, "target", None)
        text, status = error_report(
            exc, found.settings.redis_url if found else None, getattr(args, "json", False)
        )
        print(text, file=sys.stderr)
        return status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
