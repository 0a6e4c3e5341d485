"""The one-off commands behind `stripe-worker` (those that run until stopped are in
worker/serve_commands.py): each one a thin call into the module that owns it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.errors import ReceiverUnreachable, UsageError

if TYPE_CHECKING:
    import redis

    from worker.settings import Settings


def print_json(data: Any, stream: Any = None) -> None:
    print(json.dumps(data, indent=2, default=str), file=stream or sys.stdout)


def cmd_run(args: argparse.Namespace) -> int:
    """Run one component now; outputs as JSON. Exit 0 ok, 1 Stripe error, 2 bad spec."""
    from tasks.components import run_component
    from tasks.stripe_gateway import StripeGateway
    from worker.spec import ComponentSpec

    try:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text("utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read spec {args.spec}: {exc.strerror}") from None
    spec = ComponentSpec.parse(text)  # checked before anything is reached
    found = target(args)
    if args.queue:
        return _queue_component(found.settings, spec, args.id or _digest(text))
    gateway = StripeGateway.best_effort(
        found.settings, found.vault, max_network_retries=args.retries
    )
    print_json(run_component(spec, gateway))  # errors: main() prints them, exits 1 or 2
    return 0


def target(args: argparse.Namespace) -> Any:
    """The settings, vault and running dev this command works against, found once (main()
    names that Redis when it does not answer)."""
    from worker.devtools.dev_state import find_target

    if getattr(args, "target", None) is None:
        args.target = find_target()
    return args.target


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _queue_component(settings: Any, spec: Any, source_id: str) -> int:
    """Hand the component to the worker (source `cli`); the result arrives on the streams."""
    from worker.connections import redis_client
    from worker.queue import Enqueuer
    from worker.work import Work

    work = Work.for_component(spec, "cli", source_id)
    queued = Enqueuer(redis_client(settings), settings).enqueue_once(work)
    print_json(
        {
            "queued": queued,
            "duplicate": not queued,
            "source": "cli",
            "source_id": source_id,
            "work_id": work.work_id,
        }
    )
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RETENTION_DAYS = 30  # Stripe lists the events of the last 30 days


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `2h`, `3d` (or plain seconds) in seconds; UsageError otherwise."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:], 0)
    number = raw[:-1] if unit else raw
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds:
        raise UsageError(f"--since takes a duration such as 90s, 30m, 2h or 3d, got {text!r}")
    return seconds


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Queue the events Stripe lists that the receiver never queued, in created order."""
    import time

    from tasks.reconcile import reconcile
    from tasks.stripe_gateway import StripeGateway
    from worker.connections import redis_client

    if args.since and args.from_id:
        raise UsageError("reconcile takes --since or --from, not both")
    if args.account and not args.account.startswith("acct_"):
        raise UsageError(f"--account takes a connected account id, acct_..., got {args.account!r}")
    since = None
    if args.since:
        seconds = parse_duration(args.since)
        if seconds > RETENTION_DAYS * 86400:
            print(
                f"reconcile: Stripe keeps events {RETENTION_DAYS} days: older ones are out of "
                "reach; walking those it has",
                file=sys.stderr,
            )
        since = time.time() - min(seconds, RETENTION_DAYS * 86400)
    found = target(args)
    client = redis_client(found.settings)
    client.ping()  # Redis first: nothing is listed that could not be queued
    gateway = StripeGateway(found.settings, found.vault, redis_client=client)
    where = f"after {args.from_id}" if args.from_id else f"since {args.since or '30d'}"
    types = ", ".join(found.settings.event_types) or "every type"
    account = f" of {args.account}" if args.account else ""
    print(f"reconcile: Stripe's events{account} {where} ({types}), oldest first", file=sys.stderr)
    walked = reconcile(
        client, found.settings, gateway, since=since, after=args.from_id, account=args.account
    )
    print(walked.line())
    return 0


def settings_and_client(args: argparse.Namespace) -> tuple[Settings, redis.Redis]:
    """The settings the command runs with (a running dev's, when it finds one), and a
    Redis client made from them."""
    from worker.connections import redis_client

    settings = target(args).settings
    return settings, redis_client(settings)


def cmd_dlq(args: argparse.Namespace) -> int:
    """List failures, or replay them with their original idempotency keys."""
    from worker.dlq import list_failures, replay, replay_all
    from worker.queue import Enqueuer

    if args.action == "replay" and not args.ids and not args.all:
        raise UsageError("dlq replay needs entry ids (see `stripe-worker dlq list`), or --all")
    settings, client = settings_and_client(args)
    if args.action == "list":
        failures = list_failures(client, settings, count=args.count)
        for f in failures:
            if args.json:
                print(json.dumps({"id": f.entry_id, "replayed": f.replayed, **f.fields}))
                continue
            print(f.line())
        if not failures and not args.json:
            print(f"no failures in {settings.keys.stream('errors')}")
        return 0
    enqueuer = Enqueuer(client, settings)
    if args.all:  # every failure not replayed yet, in batches, however many
        done: dict[str, int] = {}
        for entry_id, outcome in replay_all(client, settings, enqueuer):
            print(f"{entry_id}  {outcome}")
            done[outcome] = done.get(outcome, 0) + 1
        summary = ", ".join(f"{n} {outcome}" for outcome, n in done.items())
        print(
            summary
            or f"nothing to replay: no failure in {settings.keys.stream('errors')} waits for one",
            file=sys.stderr,
        )
        return 0
    for entry_id in args.ids:
        queued = replay(client, settings, enqueuer, entry_id)
        print(f"{entry_id}  {'queued again' if queued else 'already replayed'}")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """Show a stream's last entries, then follow it; with --group, read as a consumer."""
    from worker.keys import STREAMS
    from worker.tail import follow

    settings = target(args).settings
    key = settings.keys.stream(args.stream)
    if key not in {settings.keys.stream(name) for name in STREAMS}:
        raise UsageError(f"unknown stream {args.stream!r}: tail customers, events or errors")
    if args.ack and not args.group:
        raise UsageError("--ack acknowledges entries for a consumer group: add --group NAME")
    if args.group:
        print(
            f"tail      reading {key} as consumer {args.consumer!r} of group {args.group!r}, "
            + (
                "acknowledging each entry: the group's other consumers will not get it"
                if args.ack
                else "not acknowledging: what it shows stays pending, and another consumer "
                "of the group claims it once idle (--ack acknowledges)"
            ),
            file=sys.stderr,
            flush=True,
        )
    _settings, client = settings_and_client(args)
    last = args.last if args.last is not None else min(10, args.count or 10)
    shown = follow(
        client,
        key,
        start="start" if args.from_start else "new" if args.new else last,
        group=args.group,
        consumer=args.consumer,
        ack=args.ack,
        count=args.count,
        as_json=args.json,
        quiet_limit=args.wait if args.count else None,
    )
    if args.count and shown < args.count:
        print(
            f"tail      {shown} of {args.count} entries: none came in the last {args.wait:g} s "
            "(--wait SECONDS waits longer)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of a stream's entries, as shipped in the package."""
    from worker.schema import schema_text

    sys.stdout.write(schema_text(args.stream))
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """Sign and post a test event; prints the receiver's answer. Exit 1 unless it is 2xx."""
    import requests

    from worker.devtools.send import Sender
    from worker.settings import env_port

    if args.kind == "signup" and not args.email:
        raise UsageError("send signup needs --email, e.g. --email jenny.rosen@example.com")
    if args.kind == "stripe" and not args.type:
        raise UsageError("send stripe needs an event TYPE, e.g. checkout.session.completed")
    metadata = dict(_key_value(item) for item in args.metadata or ())
    found = target(args)
    port = env_port() or 8000
    url = args.url or found.dev.get("receiver") or f"http://127.0.0.1:{port}"
    sender = Sender(found.settings, found.vault, found.dev, url)
    try:
        if args.kind == "signup":
            sent = sender.signup(args.email, args.name, args.user_id, metadata, args.webhook_id)
        else:
            sent = sender.stripe_event(args.type, args.customer)
    except requests.RequestException as exc:
        raise ReceiverUnreachable(
            f"could not reach the receiver at {sender.url} ({exc.__class__.__name__}); "
            "hint: start `stripe-worker dev` (or `web`), or point --url at yours"
        ) from None
    print(f"{sent.answer.status_code} {sent.answer.text.strip()}")
    print(sent.summary)
    return 0 if sent.answer.ok else 1


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--metadata takes KEY=VALUE, got {item!r}")
    return key, value


def cmd_check(args: argparse.Namespace) -> int:
    """Check the configuration: exit 1 when anything fails."""
    from worker.devtools.doctor import checks

    found = target(args)
    failed = 0
    for ok, what, detail in checks(found.settings, found.vault):
        failed += not ok
        print(f"{'OK  ' if ok else 'FAIL'}  {what:8} {detail}")
    return 1 if failed else 0
