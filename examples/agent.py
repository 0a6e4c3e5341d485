"""An example downstream agent: reads new customers from Redis, once each, and acts.

    python examples/agent.py                 # group "agents", consumer "<host>-<pid>"
    python examples/agent.py --count 10      # stop after ten entries

Run several: each entry goes to one of them. If one dies before acknowledging, another
claims its entries after --min-idle-ms. An entry whose handling fails is tried again
after --min-idle-ms; after --max-deliveries it goes to `PREFIX:customers:dead:agents`
with the error. SIGTERM or Ctrl-C stops it after the entry in hand. Settings are the
project's (REDIS_URL, STREAM_PREFIX).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket

from stripe_worker_agent import Entry, StreamConsumer
from worker.cli_process import tool_settings
from worker.connections import redis_client


def act_on(entry: Entry) -> None:
    """What this agent does with a customer: here, say hello. Yours calls your LLM.

    Delivery is at least once (a consumer can die after acting, before its ack), so an
    agent whose action must not happen twice records `entry.work_id` with the action
    and skips a work id it has seen."""
    response = entry.json("Response") or {}
    plan = (response.get("metadata") or {}).get("plan", "free")
    email = entry.fields.get("customerEmail") or "?"
    customer = entry.fields["customerId"]
    print(f"{entry.id} welcome {email} ({customer}, plan {plan})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="customers")
    parser.add_argument("--group", default="agents")
    parser.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument("--min-idle-ms", type=int, default=60_000)
    parser.add_argument("--max-deliveries", type=int, default=5)
    parser.add_argument("--count", type=int, help="stop after this many entries")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    settings = tool_settings()  # a running `stripe-worker dev` included; no tracebacks
    consumer = StreamConsumer(
        redis_client(settings),
        settings.keys.stream(args.stream),
        args.group,
        args.consumer,
        min_idle_ms=args.min_idle_ms,
        max_deliveries=args.max_deliveries,
    )
    print(f"reading {consumer.stream} as {args.group}/{args.consumer}", flush=True)
    stats = consumer.run(act_on, limit=args.count)
    print(f"stopped: {stats.handled} handled, {stats.failed} failed, {stats.dead} dead", flush=True)


if __name__ == "__main__":
    main()
