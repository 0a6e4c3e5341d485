"""An example downstream agent: reads new customers from Redis, once each, and acts.

    python examples/agent.py                 # group "agents", consumer "<host>-<pid>"
    python examples/agent.py --count 10      # stop after ten entries

Run several: each entry goes to one of them. If one dies before acknowledging, another
claims its entries after --min-idle-ms. Settings are the project's (REDIS_URL,
STREAM_PREFIX).
"""

from __future__ import annotations

import argparse
import json
import os
import socket

from worker.connections import redis_client
from worker.settings import Settings
from worker.streams import StreamConsumer


def act_on(fields: dict[str, str]) -> str:
    """What this agent does with a customer: here, say hello. Yours calls your LLM."""
    response = json.loads(fields.get("Response") or "{}")
    plan = (response.get("metadata") or {}).get("plan", "free")
    return f"welcome {fields.get('customerEmail') or '?'} ({fields['customerId']}, plan {plan})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="customers")
    parser.add_argument("--group", default="agents")
    parser.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument("--min-idle-ms", type=int, default=60_000)
    parser.add_argument("--count", type=int, help="stop after this many entries")
    args = parser.parse_args()

    settings = Settings.from_env()
    consumer = StreamConsumer(
        redis_client(settings),
        settings.keys.stream(args.stream),
        args.group,
        args.consumer,
        min_idle_ms=args.min_idle_ms,
    )
    done = 0
    while args.count is None or done < args.count:
        for entry_id, fields in consumer.read(count=10, block_ms=1000):
            print(f"{entry_id} {act_on(fields)}", flush=True)
            consumer.ack([entry_id])  # only once the work is done: a crash leaves it pending
            done += 1


if __name__ == "__main__":
    main()
