"""Where a webhook answer's CPU goes in the real receiver: `stripe-worker web` under wrk,
its gunicorn gevent workers sampled by CPU time (bench/cpu_sampler.py).

    apt-get install wrk
    python bench/receiver_profile.py                  # ~1 minute: CPU per answer, then the profile
    python bench/receiver_profile.py --profile hook,trivial --rounds 5
    git worktree add --detach /tmp/base main          # before/after, interleaved in one run:
    python bench/receiver_profile.py --against /tmp/base --profile ''

First `--rounds` wrk runs (trivial route, then the webhook route, -c16; with --against,
alternating with the other checkout's receiver) give the workers' CPU per answer, and its
system part (medians: the machine is shared). Then wrk runs on each route of --profile
against a receiver whose workers sample their CPU: each sample goes to the first part of
PARTS whose pattern one of its frames matches, and a part's share of the samples times the
route's CPU per answer gives its µs per answer.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

import redis

BENCH = Path(__file__).resolve().parent
if not __package__:
    sys.path[0] = str(BENCH.parent)

from bench.harness import Stack, wrk  # noqa: E402
from bench.side_by_side import EVENTS_PER_S, TICKS, requests_file, rss_mb, tree  # noqa: E402
from tests.support import Process, wait_http  # noqa: E402
from worker.devtools.local import free_port  # noqa: E402

# (part, a regex on one frame "function (file:line)"), first match wins: the order puts a
# library under our code (json under the trail) with our code, and Redis's client before
# the gevent sockets it sits on.
PARTS: tuple[tuple[str, str], ...] = (
    ("redis client (pipeline, send, parse)", r"\(redis/"),
    ("log line (logging)", r"\(logging/|worker/logs\.py"),
    ("metrics (prometheus_client)", r"\(prometheus_client/"),
    ("trail line (worker/trail.py)", r"worker/trail\.py"),
    ("task message (worker/envelope.py)", r"worker/envelope\.py"),
    ("ledger, Work (worker/queue.py, work.py)", r"worker/queue\.py|worker/work\.py"),
    ("verify (HMAC)", r"webhooks/verify\.py"),
    ("strict JSON (parse, surrogates)", r"webhooks/strict_json\.py"),
    ("tracing checks (worker/tracing.py)", r"worker/tracing\.py"),
    ("routes, answer (webhooks/app.py)", r"webhooks/app\.py"),
    ("body read (webhooks/limits.py)", r"webhooks/limits\.py"),
    ("Flask / werkzeug", r"\((flask|werkzeug)/"),
    ("gunicorn: request parse", r"gunicorn/http/(message|parser|unreader|body)\.py"),
    ("gunicorn: environ, response", r"gunicorn/http/wsgi\.py"),
    ("gunicorn: worker loop", r"gunicorn/"),
    ("gevent (hub, sockets, greenlets)", r"\(gevent/|greenlet"),
)


_SYSCALL = re.compile(r"^SocketMixin\.(send|recv|sendall)|^(send|recv)")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process tree: Python's work, and the kernel's
    (sockets, epoll) on its behalf."""
    user = system = 0
    for p in tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]), system + int(fields[12])
    return user / TICKS, system / TICKS


def sample_parts(raw: Path) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    """py-spy's raw output: samples by part, of them in a socket's send or recv, by leaf
    frame, and in all."""
    parts: Counter[str] = Counter()
    syscalls: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    rules = [(name, re.compile(pattern)) for name, pattern in PARTS]
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaves[frames[-1]] += n
        part = next((name for name, rule in rules if any(rule.search(f) for f in frames)), "other")
        parts[part] += n
        if _SYSCALL.search(frames[-1]):
            syscalls[part] += n
    return parts, syscalls, leaves, total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--profile-seconds", type=float, default=12)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--profile", default="hook", help="routes to sample, comma-separated: hook,trivial"
    )
    parser.add_argument("--leaves", type=int, default=25, help="top leaf frames to print")
    parser.add_argument("--raw", help="keep the sampled stacks in RAW.<route>")
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout of the project (a `git worktree add --detach DIR main`): its "
        "receiver runs beside this one's, and the rounds alternate between the two",
    )
    args = parser.parse_args()
    stack = Stack(f"rprof{os.getpid()}", web=False)
    folders: list[Path] = []
    try:
        web = stack.web(2)
        receivers = {"this": (web.url, web.pid)}
        if args.against:
            receivers["against"] = other_receiver(stack, args.against.resolve())
        print(f"load average {os.getloadavg()[0]:.2f}; RSS per worker at start: " + "; ".join(
            f"{name} {', '.join(f'{v:.0f}' for v in rss_mb(pid)[1:])} MB"
            for name, (_url, pid) in receivers.items()
        ), flush=True)  # fmt: skip
        figures: dict[tuple[str, str], list[float]] = {}
        kernel: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for name, (url, pid) in receivers.items():
                folder = requests_file(int(args.seconds * EVENTS_PER_S), f"{stack.prefix}{name}{r}")
                folders.append(folder)
                measured = measure(url, pid, folder, args, stack.redis)
                for route, (cpu_us, sys_us) in measured.items():
                    figures.setdefault((name, route), []).append(cpu_us)
                    kernel.setdefault((name, route), []).append(sys_us)
        for name, (_url, pid) in receivers.items():
            trivial = statistics.median(figures[name, "trivial"])
            hook = statistics.median(figures[name, "hook"])
            print(f"{name}: median CPU per answer: trivial {trivial:.0f} µs "
                  f"({statistics.median(kernel[name, 'trivial']):.0f} system), webhook "
                  f"{hook:.0f} µs ({statistics.median(kernel[name, 'hook']):.0f} system); "
                  f"webhook / trivial {hook / trivial:.2f}; RSS per worker after "
                  f"{', '.join(f'{v:.0f}' for v in rss_mb(pid)[1:])} MB")  # fmt: skip
        print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
        for route in args.profile.split(",") if args.profile else ():
            profile(stack, route, statistics.median(figures["this", route]), args)
    finally:
        stack.stop()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def other_receiver(stack: Stack, root: Path) -> tuple[str, int]:
    """`stripe-worker web` of the checkout at `root`, on the same Redis and prefix."""
    port = free_port()
    argv = [sys.executable, "-m", "worker", "web", "--host", "127.0.0.1", "--port",
            str(port), "--workers", "2"]  # fmt: skip
    env = dict(stack.env, PYTHONPATH=str(root))
    proc = Process(argv, env, stack.logdir / "against.log", cwd=str(root)).start()
    stack.procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz")
    return url, proc.pid


def redis_cpu_s(client: redis.Redis) -> float:
    """redis-server's own CPU seconds (INFO cpu): it shares the cores with the receiver,
    so what a delivery costs Redis bounds req/s too. Other users of the server count in."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure(
    url: str, pid: int, folder: Path, args: argparse.Namespace, client: redis.Redis
) -> dict:
    """wrk on the trivial route, then on the webhook route: each one's (CPU, system CPU)
    per answer, µs."""
    env = dict(os.environ, REQUESTS_FILE=str(folder / "requests.txt"), WRK_THREADS="2")
    out = {}
    for route, path, script in (
        ("trivial", "/healthz", None),
        ("hook", "/webhooks/stripe", str(folder / "replay.lua")),
    ):
        user0, sys0 = cpu_split(pid)
        redis0 = redis_cpu_s(client)
        result = wrk(url + path, args.seconds, script, env, args.connections)
        answers = max(1.0, result["rps"] * args.seconds)
        user1, sys1 = cpu_split(pid)
        redis_us = (redis_cpu_s(client) - redis0) * 1e6 / answers
        out[route] = ((user1 - user0 + sys1 - sys0) * 1e6 / answers, (sys1 - sys0) * 1e6 / answers)
        print(f"{url} {route:7} c{args.connections}: {result['rps']:6.0f} req/s, p99 "
              f"{result['p99_ms']:6.1f} ms, {out[route][0]:4.0f} µs CPU per answer "
              f"({out[route][1]:.0f} of it system; redis-server {redis_us:.0f}), non-2xx "
              f"{result['non2xx']}", flush=True)  # fmt: skip
    return out


def profile(stack: Stack, route: str, cpu_us: float, args: argparse.Namespace) -> None:
    """`route` (hook or trivial) under wrk against a receiver whose workers sample their
    CPU; `cpu_us` is the route's CPU per answer, which the shares divide."""
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="rprof-"))
    argv = [sys.executable, "-m", "bench.cpu_sampler", str(port), str(out)]
    proc = Process(argv, stack.env, stack.logdir / "sampled.log").start()
    seconds = args.profile_seconds
    folder = requests_file(int((seconds + 1) * EVENTS_PER_S), f"{stack.prefix}prof")
    env = dict(os.environ, REQUESTS_FILE=str(folder / "requests.txt"), WRK_THREADS="2")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        path, script = ("/healthz", None) if route == "trivial" else (
            "/webhooks/stripe", str(folder / "replay.lua"))  # fmt: skip
        result = wrk(f"http://127.0.0.1:{port}{path}", seconds, script, env, args.connections)
        proc.stop(30)
        raw = out / "all.txt"
        raw.write_text("".join(f.read_text() for f in out.glob("*.txt")))
        parts, syscalls, leaves, total = sample_parts(raw)
        if args.raw:
            shutil.copy(raw, f"{args.raw}.{route}")
    finally:
        proc.stop(5)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    # The timer fires at the kernel's tick at best (a few ms of CPU), so the samples are
    # shares of the CPU, not its amount: that is the interleaved runs' figure.
    print(f"\n{route} sampled: {result['rps']:.0f} req/s, {total} CPU samples of both workers; "
          f"µs per answer below = share x {cpu_us:.0f} µs")  # fmt: skip
    print(f"  {'part':42} {'share':>6} {'µs':>6}  of which in a socket's send/recv")
    for name, n in parts.most_common():
        print(f"  {name:42} {100 * n / total:5.1f}% {cpu_us * n / total:6.0f}  "
              f"{cpu_us * syscalls[name] / total:6.0f}")  # fmt: skip
    print("\nleaf frames:")
    for frame, n in leaves.most_common(args.leaves):
        print(f"  {100 * n / total:5.1f}%  {frame[:110]}")


if __name__ == "__main__":
    sys.exit(main())
