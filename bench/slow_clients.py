"""Slow senders against the receiver: legitimate webhooks' latency while 1,000 connections
trickle their headers or bodies, before (gunicorn gthread 2 x 4, the former set-up) and
after (`stripe-worker web`: gevent workers with READ_TIMEOUT), in the same run.

    .venv/bin/python bench/slow_clients.py            # about two minutes
    .venv/bin/python bench/slow_clients.py --slow 200 --seconds 4

Both set-ups run side by side: req/s of signed webhooks with nobody slow (4 keep-alive
client processes; three rounds, interleaved), then, for each in turn, `--slow`
connections (half sending a header byte a second, half a body declared 1 MiB a byte a
second, each for at most 30 s) while one client posts signed webhooks, each waiting at
most 3 s for its answer; and when the server cut the slow ones.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from http.client import HTTPConnection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(ROOT)

from bench.harness import Section, Stack, load, machine, pct, render, stripe_request  # noqa: E402

TRICKLE_FOR = 30.0  # seconds a slow connection keeps trickling at most


async def _slow_connection(port: int, body: bool, cut: list[float]) -> None:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"POST /webhooks/stripe HTTP/1.1\r\nHost: bench\r\n"
        if body:
            head += b"Content-Length: 1048576\r\nContent-Type: application/json\r\n\r\n{"
        writer.write(head)
        while time.monotonic() - started < TRICKLE_FOR:
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout=1.0)
            except TimeoutError:
                writer.write(b" " if body else b"X")
                await writer.drain()
                continue
            if data:  # an answer (408): the server is done with us
                await reader.read()
            cut.append(time.monotonic() - started)
            break
        writer.close()
    except OSError:
        cut.append(time.monotonic() - started)


def _slow_clients(port: int, n: int, ready: mp.Event, out: mp.Queue) -> None:
    async def run() -> list[float]:
        cut: list[float] = []
        tasks = [asyncio.create_task(_slow_connection(port, i % 2 == 1, cut)) for i in range(n)]
        await asyncio.sleep(1.0)  # all connected and started
        ready.set()
        await asyncio.gather(*tasks)
        return cut

    out.put(asyncio.run(run()))


def legit_under_fire(port: int, seconds: float) -> dict:
    """Signed webhooks one after the other; each waits at most 3 s for its answer."""
    lat, failed = [], 0
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        method, path, body, headers = stripe_request(i, f"slow{os.getpid()}{port}")
        i += 1
        t0 = time.perf_counter()
        try:
            conn = HTTPConnection("127.0.0.1", port, timeout=3)
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status != 200:
                failed += 1
                continue
            lat.append(time.perf_counter() - t0)
        except OSError:
            failed += 1
    return {"ok": len(lat), "failed": failed, "p50": pct(lat, 50) * 1e3, "p99": pct(lat, 99) * 1e3}


def start(setup: str) -> Stack:
    """The receiver as set up before (plain gunicorn, gthread 2 x 4) or after (`web`)."""
    stack = Stack(f"benchslow{os.getpid()}{setup}", web=False)
    if setup == "before":
        stack.gthread(2, 4)
    else:
        stack.web(2)
    return stack


def under_fire(stack: Stack, slow: int, seconds: float) -> dict:
    ready, out = mp.Event(), mp.Queue()
    slow_proc = mp.Process(target=_slow_clients, args=(stack.port, slow, ready, out))
    slow_proc.start()
    ready.wait(30)
    fire = legit_under_fire(stack.port, seconds)
    cut = out.get(timeout=TRICKLE_FOR + 30)
    slow_proc.join()
    return {"fire": fire, "cut": cut}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=1000, help="slow connections (default 1000)")
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    setups = {
        "before": "gunicorn gthread 2 x 4 (before)",
        "after": "stripe-worker web: gevent 2 x 1000, READ_TIMEOUT 10 s",
    }
    stacks = {setup: start(setup) for setup in setups}
    try:
        # req/s in interleaved rounds (both servers up, one loaded at a time), so that other
        # work on the machine weighs on both alike; the median of three is reported.
        rps: dict[str, list[float]] = {setup: [] for setup in setups}
        for _ in range(3):
            for setup, stack in stacks.items():
                rps[setup].append(load(stack.port, stripe_request, args.seconds)["rps"])
        fired = {
            setup: under_fire(stack, args.slow, args.seconds) for setup, stack in stacks.items()
        }
    finally:
        for stack in stacks.values():
            stack.stop()
    rows = []
    for setup, label in setups.items():
        f, cut = fired[setup]["fire"], fired[setup]["cut"]
        rounds = " / ".join(f"{r:,.0f}" for r in rps[setup])
        rows.append(
            (
                label,
                f"{sorted(rps[setup])[1]:,.0f} ({rounds})",
                f["ok"],
                f["failed"],
                f"{f['p50']:.2f}",
                f"{f['p99']:.2f}",
                f"{len(cut)} of {args.slow}",
                f"{pct(cut, 50) if cut else float('nan'):.1f}",
            )
        )
    section = Section("Legitimate senders beside slow ones", "bench/slow_clients.py")
    section.table(
        (
            "set-up",
            "req/s, nobody slow (3 rounds)",
            f"with {args.slow} slow connections: legit answered",
            "not answered in 3 s",
            "p50 ms",
            "p99 ms",
            "slow ones cut by the server",
            "cut after (median s)",
        ),
        rows,
    )
    print(render([section]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
