"""`stripe-worker status` and `stripe-worker trace`: what the system does now, and where a
piece of work went (worker/status.py and worker/trail.py hold the logic)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from worker.status import DEFAULT_MAX_AGE


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare both commands with the CLI's `command(name, summary, details)`."""
    status = command(
        "status",
        "live workers, queue, pending work, streams and the Stripe pace",
        "Exits 1 when no worker is alive or pending work is older than --max-age: a probe.",
    )
    status.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE,
        metavar="SECONDS",
        help=f"oldest pending work that is still OK ({DEFAULT_MAX_AGE:.0f})",
    )
    status.add_argument("--json", action="store_true", help="one JSON object (README: its keys)")
    status.set_defaults(func=cmd_status)
    trace = command(
        "trace",
        "where is my webhook? the trail of a piece of work",
        "Found by webhook or event id, user id, customer id, email or work id; exits 1 when "
        "nothing is found.",
    )
    trace.add_argument("term", metavar="ID", help="an id or an email")
    trace.add_argument("--json", action="store_true", help="the trails as one JSON array")
    trace.set_defaults(func=cmd_trace)


def cmd_status(args: argparse.Namespace) -> int:
    """One screen of figures; exit 1 when no worker is alive or work is too old."""
    from worker.commands import print_json, settings_and_client
    from worker.status import render, snapshot

    settings, client = settings_and_client(args)
    status = snapshot(client, settings)
    if args.json:
        print_json(status.to_json(args.max_age))
    else:
        print(render(status, args.max_age))
    return 1 if status.problems(args.max_age) else 0


def cmd_trace(args: argparse.Namespace) -> int:
    """The trail of every piece of work ID names; exit 1 when none is found."""
    from worker.commands import print_json, settings_and_client
    from worker.terminal import printable
    from worker.trail import Trail, describe

    settings, client = settings_and_client(args)
    found = Trail(client, settings).find(args.term)
    if args.json:
        print_json([{"work_id": f.work_id, "trail": f.lines} for f in found])
    for f in [] if args.json else found:
        print(printable(f.work_id))  # a work id holds the sender's user or event id
        for line in f.lines:
            print("  " + describe(line))
    if not found:
        days = settings.trail_ttl / 86400
        print(f"nothing found for {args.term!r} (trails are kept {days:g} days)", file=sys.stderr)
    return 0 if found else 1
