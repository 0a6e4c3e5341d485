"""What durability costs the receiver: req/s of signed webhooks with Redis's AOF fsync
policies, on a redis-server of this script's own (the shared one is never reconfigured).

    .venv/bin/python bench/persistence.py            # about half a minute
    .venv/bin/python bench/persistence.py --seconds 4

Each answered 200 is one Redis write (the dedupe-and-queue script). With
`appendfsync always` Redis fsyncs the AOF before it replies, so a 200 is on disk; with
`everysec` up to a second of answered webhooks can be lost if the host crashes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

from bench.harness import Section, Stack, load, machine, render, stripe_request  # noqa: E402
from worker.devtools.local import free_port, redis_answers  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        print("redis-server is not installed: nothing to measure")
        return 1
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    folder = tempfile.mkdtemp(prefix="bench-aof-")
    redis_proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not redis_answers(url):
            time.sleep(0.05)
        stack = Stack(f"benchaof{os.getpid()}", redis_url=url)
        print(f"Machine: {machine(url)}; AOF in {folder}\n")
        load(stack.port, stripe_request, 2)  # warm up: connections, scripts, AOF file
        rows = []
        try:
            # Interleaved rounds, so a neighbour's load on the machine hits both alike.
            for round_ in (1, 2):
                for policy in ("everysec", "always"):
                    stack.redis.config_set("appendfsync", policy)
                    r = load(stack.port, stripe_request, args.seconds)
                    rows.append(
                        (
                            policy,
                            round_,
                            f"{r['rps']:,.0f}",
                            f"{r['p50_ms']:.2f}",
                            f"{r['p99_ms']:.2f}",
                            r["statuses"],
                        )
                    )
        finally:
            stack.stop()
        section = Section("What durability costs the receiver", "bench/persistence.py")
        section.say(f"4 keep-alive Python clients, {args.seconds:g} s a row, rounds interleaved.")
        section.table(("appendfsync", "round", "req/s", "p50 ms", "p99 ms", "answers"), rows)
        print(render([section]))
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
