"""What trimming that spares unread entries costs a publish, next to the plain cap.

    python bench/publish_trim.py          # about 20 s; prints the machine and one row a case

Each case publishes N entries through `Publisher` (the Lua step the worker runs), one
client, at the cap (the stream is filled to STREAM_MAXLEN first). The baseline is the
step as it was before, `XADD MAXLEN ~`, run the same way in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

from bench.harness import REDIS_URL, machine  # noqa: E402
from tasks.publish import Publisher, as_field  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.streams import StreamConsumer  # noqa: E402

BEFORE = """
local seen = redis.call('GET', KEYS[2])
if seen then return {0, seen} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
return {1, id}
"""
FIELDS = {"component": "stripe.createCustomer", "customerId": "cus_x", "Response": "{}" * 200}


def run_case(client: redis.Redis, name: str, n: int, maxlen: int) -> None:
    settings = Settings(redis_url=REDIS_URL, stream_prefix=f"bench{uuid.uuid4().hex[:8]}")
    key = settings.keys.stream("customers")
    publisher = Publisher(client, settings.with_(stream_maxlen=maxlen))
    before = client.register_script(BEFORE)
    reader = None
    if name != "no group" and name != "before":
        StreamConsumer(client, key, "lagging" if name == "lagging group" else "agents", "c")
        reader = StreamConsumer(client, key, "agents", "c") if name == "group keeping up" else None

    def publish(i: int) -> None:
        if name == "before":
            pairs = [x for k, v in FIELDS.items() for x in (k, as_field(v))]
            before(
                keys=[key, settings.keys.published("customers", f"b{i}")],
                args=[maxlen, 60, "", *pairs],
            )
        else:
            publisher.publish("customers", f"w{i}", FIELDS)
        if reader is not None and i % 100 == 0:
            reader.ack(i for i, _f in reader.read(count=100))

    for i in range(maxlen):  # at the cap before timing
        publish(-i - 1)
    started = time.perf_counter()
    for i in range(n):
        publish(i)
    seconds = time.perf_counter() - started
    print(
        f"{name:18} {n / seconds:8.0f} publishes/s  {seconds / n * 1e6:6.0f} µs each  "
        f"stream length after: {client.xlen(key)}"
    )
    for found in client.scan_iter(f"{settings.stream_prefix}:*", count=1000):
        client.delete(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--maxlen", type=int, default=1000)
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    print(machine())
    print(f"{args.n} publishes a case, STREAM_MAXLEN={args.maxlen}")
    for name in ("before", "no group", "group keeping up", "lagging group"):
        run_case(client, name, args.n, args.maxlen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
