"""The `stripe-worker` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from worker.errors import QueueUnavailable, SpecError, StripeCallError, StripeWorkerError


def _print_json(data: Any, stream: Any = None) -> None:
    print(json.dumps(data, indent=2, default=str), file=stream or sys.stdout)


def cmd_run(args: argparse.Namespace) -> int:
    """Run one component now; outputs as JSON. Exit 0 ok, 1 Stripe error, 2 bad spec."""
    from worker.components import ComponentSpec, StripeGateway, run_component
    from worker.settings import Settings
    from worker.vault import Vault

    try:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text("utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}") from None
    settings = Settings.from_env()
    spec = ComponentSpec.parse(text)
    if args.queue:
        return _queue_component(settings, spec, args.id or _digest(text))
    gateway = StripeGateway(settings, Vault.from_settings(settings),
                            max_network_retries=args.retries)
    _print_json(run_component(spec, gateway))  # errors: main() prints them, exits 1 or 2
    return 0


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _queue_component(settings: Any, spec: Any, source_id: str) -> int:
    """Hand the component to the worker (source `cli`); the result arrives on the streams."""
    from worker.celery_app import create_celery, redis_client
    from worker.queue import Enqueuer
    from worker.work import component_work

    task, work = component_work(spec, "cli", source_id)
    client = redis_client(settings)
    queued = Enqueuer(create_celery(settings), client, settings).enqueue_once(
        f"cli:{source_id}", task, work, summary=f"cli {source_id}")
    _print_json({"queued": queued, "duplicate": not queued, "source": "cli",
                 "source_id": source_id, "work_id": work["work_id"]})
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    """Serve the local Stripe API until interrupted."""
    from worker.emulator import EmulatorServer, EmulatorState

    state = EmulatorState(allowed_keys=set(args.key or ()))
    state.set_faults({"latency_ms": args.latency_ms, "rate": args.fail_rate,
                      "status": args.fail_status, "rate_limit": args.rate_limit})
    server = EmulatorServer(args.host, args.port, state)
    print(f"stripe emulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """The receiver under gunicorn; metrics summed across its worker processes."""
    import os
    import tempfile

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Read by prometheus_client when imported: set before anything imports it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="stripe-worker-prom-")
    from gunicorn.app.base import BaseApplication

    from worker.logs import configure_logging
    from worker.settings import Settings

    settings = Settings.from_env()
    configure_logging()

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{args.host}:{args.port}")
            self.cfg.set("workers", args.workers)
            if args.threads > 1:  # gthread: a worker's threads overlap their Redis waits
                self.cfg.set("threads", args.threads)
            self.cfg.set("accesslog", None)  # our own line per request replaces it
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("child_exit", _mark_dead)

        def load(self):  # type: ignore[no-untyped-def]
            from webhooks import create_app

            return create_app(settings)

    Server().run()
    return 0


def _mark_dead(server: object, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def cmd_worker(args: argparse.Namespace) -> int:
    """The Celery worker."""
    import os

    from worker.settings import Settings

    settings = Settings.from_env()
    pool = args.pool or settings.worker_pool
    from worker.celery_app import create_celery
    from worker.logs import configure_logging

    configure_logging(args.loglevel.upper(),
                      "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s")
    from worker.reaper import install_reaper

    app = create_celery(settings)
    install_reaper(app)  # only processes that run tasks reap
    argv = ["worker", f"--loglevel={args.loglevel}", f"--hostname=stripe-worker-{os.getpid()}@%h",
            f"--concurrency={args.concurrency or settings.worker_concurrency}",
            f"--pool={pool}", "--without-gossip", "--without-mingle"]
    app.worker_main(argv)
    return 0


def _runtime():  # type: ignore[no-untyped-def]
    from worker.celery_app import create_celery, redis_client

    settings, _state = _dev_settings()
    return settings, redis_client(settings), create_celery(settings)


def cmd_dlq(args: argparse.Namespace) -> int:
    """List failures, or replay them with their original idempotency keys."""
    from worker.dlq import list_failures, replay
    from worker.queue import Enqueuer

    settings, client, app = _runtime()
    failures = list_failures(client, settings, count=args.count)
    if args.action == "list":
        for f in failures:
            if args.json:
                print(json.dumps({"id": f.entry_id, "replayed": f.replayed, **f.fields}))
                continue
            state = "replayed" if f.replayed else "failed"
            print(f"{f.entry_id}  {state:8}  {f.fields.get('component', ''):26} "
                  f"{f.fields.get('error_type', ''):22} {f.fields.get('source', '')}:"
                  f"{f.fields.get('source_id', '')}  {f.fields.get('error_message', '')[:80]}")
        if not failures and not args.json:
            print(f"no failures in {settings.key('errors')}")
        return 0
    ids = [f.entry_id for f in failures if not f.replayed] if args.all else args.ids
    if not ids:
        print("nothing to replay: give entry ids, or --all", file=sys.stderr)
        return 2
    enqueuer = Enqueuer(app, client, settings)
    for entry_id in ids:
        queued = replay(client, settings, enqueuer, entry_id)
        print(f"{entry_id}  {'queued again' if queued else 'already replayed'}")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """Show stream entries as they arrive; with --group, read and ack as a consumer."""
    import datetime

    from worker.streams import StreamConsumer, decode_entry, stream_key

    settings, client, _app = _runtime()
    key = stream_key(settings, args.stream)
    consumer = None
    if args.group:
        consumer = StreamConsumer(client, key, args.group, args.consumer or "tail",
                                  start="0" if args.from_start else "$")
    last = "0" if args.from_start else "$"
    shown = 0
    while args.count is None or shown < args.count:
        if consumer is not None:
            items = consumer.read(count=10, block_ms=1000)
        else:
            answer = client.xread({key: last}, count=10, block=1000) or []
            items = [(i.decode(), decode_entry(f)) for _s, batch in answer for i, f in batch]
        for entry_id, fields in items:
            last = entry_id
            if args.json:
                print(json.dumps({"id": entry_id, **fields}), flush=True)
            else:
                at = datetime.datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000)
                what = fields.get("event_type") or fields.get("error_type") or ""
                cols = [fields.get(k) or "-" for k in ("component", "customerId", "customerEmail")]
                print(f"{at:%H:%M:%S}  {cols[0]:26} {cols[1]:20} {cols[2]:30} "
                      f"{fields.get('source', '')}:{fields.get('source_id', '')} {what}",
                      flush=True)
            if consumer is not None:
                consumer.ack([entry_id])
            shown += 1
            if args.count is not None and shown >= args.count:
                break
    return 0


def _dev_settings():  # type: ignore[no-untyped-def]
    """Settings from the environment; where unset, those of a running `stripe-worker dev`."""
    import os

    from worker.dev import read_state
    from worker.settings import Settings

    state = read_state()
    overrides = {}
    if state and not os.environ.get("REDIS_URL"):
        overrides = {"redis_url": state["redis_url"], "stream_prefix": state["stream_prefix"]}
    return Settings.from_env(**overrides), state


def cmd_send(args: argparse.Namespace) -> int:
    """Sign and post a test event; prints the receiver's answer. Exit 1 unless it is 2xx."""
    import requests

    from worker.send import Sender
    from worker.vault import Vault

    settings, state = _dev_settings()
    sender = Sender(settings, Vault.from_settings(settings), state, args.url)
    try:
        if args.kind == "signup":
            if not args.email:
                raise SpecError("send signup needs --email")
            answer = sender.signup(args.email, args.name, args.user_id)
        else:
            if not args.type:
                raise SpecError("send stripe needs an event TYPE, such as customer.created")
            answer = sender.stripe_event(args.type, args.customer)
    except requests.RequestException as exc:
        print(f"could not reach the receiver at {sender.url}: {exc.__class__.__name__}",
              file=sys.stderr)
        return 1
    print(f"{answer.status_code} {answer.text.strip()}")
    return 0 if answer.ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    """Check the configuration: exit 1 when anything fails."""
    from worker.doctor import checks
    from worker.vault import Vault

    settings, _state = _dev_settings()
    failed = 0
    for ok, what, detail in checks(settings, Vault.from_settings(settings)):
        failed += not ok
        print(f"{'OK  ' if ok else 'FAIL'}  {what:8} {detail}")
    return 1 if failed else 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Everything in one process, on embedded defaults where nothing is configured."""
    from worker.dev import run_dev

    return run_dev(args.host, args.port, args.concurrency)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stripe-worker",
        description="Webhook worker between Stripe, your app and your agents.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one component (SPEC.json, or - for stdin)")
    run.add_argument("spec", metavar="SPEC.json")
    run.add_argument("--retries", type=int, default=2,
                     help="network retries of temporary errors (default 2, same idempotency key)")
    run.add_argument("--queue", action="store_true",
                     help="hand it to the worker instead; the result goes to the streams")
    run.add_argument("--id", help="with --queue: the source id (default: a hash of the spec)")
    run.set_defaults(func=cmd_run)

    import os

    dev = sub.add_parser("dev", help="receiver, worker and emulator in one process, for trying")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    dev.add_argument("--concurrency", type=int, default=4)
    dev.set_defaults(func=cmd_dev)

    web = sub.add_parser("web", help="serve the webhook receiver under gunicorn")
    web.add_argument("--host", default="0.0.0.0")
    web.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    web.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY") or 2))
    web.add_argument("--threads", type=int, default=int(os.environ.get("WEB_THREADS") or 4),
                     help="threads per worker (gthread) when above 1")
    web.set_defaults(func=cmd_web)

    wrk = sub.add_parser("worker", help="run the Celery worker")
    wrk.add_argument("--concurrency", type=int, help="default: WORKER_CONCURRENCY (16)")
    wrk.add_argument("--pool", choices=("prefork", "threads", "gevent", "solo"),
                     help="default: WORKER_POOL (threads)")
    wrk.add_argument("--loglevel", default="INFO")
    wrk.set_defaults(func=cmd_worker)

    check = sub.add_parser("check", help="check Redis, secrets, key mode and Stripe")
    check.set_defaults(func=cmd_check)

    send = sub.add_parser("send", help="post a correctly signed test event to a receiver")
    send.add_argument("kind", choices=("signup", "stripe"))
    send.add_argument("type", nargs="?", help="for stripe: " + ", ".join(
        ("customer.created", "checkout.session.completed", "invoice.payment_failed")))
    send.add_argument("--email")
    send.add_argument("--name")
    send.add_argument("--user-id")
    send.add_argument("--customer", help="for stripe: name this customer instead of making one")
    send.add_argument("--url", help="the receiver (default: the running dev's, else :8000)")
    send.set_defaults(func=cmd_send)

    dlq = sub.add_parser("dlq", help="list and replay failures of the errors stream")
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("ids", nargs="*", metavar="ID", help="error entry ids to replay")
    dlq.add_argument("--all", action="store_true", help="replay every failure not replayed yet")
    dlq.add_argument("--count", type=int, default=1000, help="newest entries to look at")
    dlq.add_argument("--json", action="store_true")
    dlq.set_defaults(func=cmd_dlq)

    tail = sub.add_parser("tail", help="show a stream's entries as they arrive")
    tail.add_argument("stream", help="customers, events, errors (or a full key)")
    tail.add_argument("--group", help="read as this consumer group, acknowledging each entry")
    tail.add_argument("--consumer", help="consumer name within the group (default: tail)")
    tail.add_argument("--from-start", action="store_true", help="begin at the oldest entry")
    tail.add_argument("--count", type=int, help="stop after this many entries")
    tail.add_argument("--json", action="store_true", help="one JSON object a line")
    tail.set_defaults(func=cmd_tail)

    emu = sub.add_parser("emulator", help="serve the local Stripe API emulator")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=12111)
    emu.add_argument("--key", action="append",
                     help="accept only this API key (repeatable); default: any well-formed key")
    emu.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    emu.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests failed")
    emu.add_argument("--fail-status", type=int, default=500, choices=(500, 429, 503))
    emu.add_argument("--rate-limit", type=float, default=0.0,
                     help="requests/s before answering 429 like Stripe (0 = none)")
    emu.set_defaults(func=cmd_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    args = build_parser().parse_args(argv)
    if args.func is cmd_worker and (args.pool or os.environ.get("WORKER_POOL")) == "gevent":
        # Sockets must be patched before redis, requests or ssl are imported.
        from celery import maybe_patch_concurrency

        maybe_patch_concurrency(["-P", "gevent"])
    import redis

    try:
        return int(args.func(args) or 0)
    except (StripeCallError, QueueUnavailable) as exc:
        _print_json({"error": exc.to_dict()}, sys.stderr)
        return 1
    except StripeWorkerError as exc:  # a bad spec, setting or secret: the user's to fix
        _print_json({"error": exc.to_dict()}, sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"Redis at REDIS_URL does not answer ({exc.__class__.__name__})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
