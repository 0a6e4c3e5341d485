"""What the benchmark scripts share: the stack they measure, the load generators, the machine
line, and results as data with one markdown renderer.

A scenario script measures one thing and returns a `Section`: its tables and its prose, every
figure in it measured by that run (the prose is written from the measured values, never typed
in). `render` turns sections into markdown; `write_page` puts them in docs/benchmarks.md and
keeps the sections other scripts measured (their heading names the script).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path

import redis

from tests.support import (
    Process,
    WebProcess,
    clean_env,
    cli,
    sign_standard,
    sign_stripe,
    wait_http,
)
from worker.devtools.emulator import EmulatorServer
from worker.devtools.local import free_port

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
KEY = "sk_test_bench" + "0" * 20
WHSEC = "whsec_bench_endpoint_secret_01"
SIGNUP_WHSEC = "whsec_" + "YmVuY2gtc2lnbnVwLXNlY3JldC0wMDAwMDE="
# The Redis the benches share (a bench with a Redis of its own passes its URL to Stack).
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

Request = tuple[str, str, bytes, dict[str, str]]


# Results as data, and the one renderer.


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass
class Section:
    """One scenario's results: `parts` are prose (made from measured values) and tables,
    in order; `script` is the bench script that measured them."""

    title: str
    script: str
    parts: list[str | Table] = field(default_factory=list)

    @property
    def heading(self) -> str:
        return f"## {self.title} ({self.script})"

    def say(self, text: str) -> None:
        self.parts.append(text)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.parts.append(Table(tuple(columns), tuple(tuple(map(str, r)) for r in rows)))


def render(sections: Sequence[Section]) -> str:
    out: list[str] = []
    for section in sections:
        out.append(section.heading + "\n")
        for part in section.parts:
            if isinstance(part, Table):
                out.append("| " + " | ".join(part.columns) + " |")
                out.append("|" + "---|" * len(part.columns))
                out += ["| " + " | ".join(row) + " |" for row in part.rows]
                out.append("")
            else:
                out.append(part + "\n")
    return "\n".join(out)


def write_page(sections: Sequence[Section], command: str, path: Path = DOC) -> None:
    """docs/benchmarks.md: a header naming the command and the machine, `sections`, then
    the sections of the page that other scripts measured, as they were."""
    ours = {s.script for s in sections}
    kept: list[str] = []
    if path.exists():
        keeping = False
        for line in path.read_text("utf-8").splitlines(keepends=True):
            if line.startswith("## "):
                # `## ... (bench/a.py, bench/b.py)`: kept unless this run measured it.
                named = set(re.findall(r"bench/\w+\.py", line.rsplit("(", 1)[-1]))
                keeping = bool(named - ours)
            if keeping:
                kept.append(line)
    today = f"{datetime.now(tz=UTC):%Y-%m-%d}"
    header = f"# Benchmarks\n\nMeasured {today} by `{command}` on: {machine()}.\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + render(sections) + ("\n" + "".join(kept) if kept else ""))


def machine(redis_url: str = REDIS_URL) -> str:
    """The machine line: hardware, load, versions of what is measured."""
    from importlib.metadata import version

    import celery
    import gunicorn
    import stripe

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    server = redis.Redis.from_url(redis_url).info("server").get("redis_version", "?")
    return (
        f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
        f"load average {os.getloadavg()[0]:.2f} at the start; "
        f"Python {platform.python_version()}, Redis {server}, celery {celery.__version__}, "
        f"flask {version('flask')}, gunicorn {gunicorn.__version__}, "
        f"stripe {stripe.VERSION}"
    )


def run_scenario(measure: Callable[[bool], Section], description: str | None) -> int:
    """A scenario script's main: `--quick` for shorter runs; prints its section."""
    import argparse

    parser = argparse.ArgumentParser(description=(description or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, same tables")
    args = parser.parse_args()
    print(f"Machine: {machine()}.\n", flush=True)
    print(render([measure(args.quick)]), flush=True)
    return 0


# Requests and load.


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def stripe_request(i: int, prefix: str) -> Request:
    body = json.dumps(
        {
            "id": f"evt_{prefix}_{i}",
            "object": "event",
            "type": "product.created",
            "livemode": False,
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": f"prod_{i}",
                    "object": "product",
                    "name": "Bench product",
                    "metadata": {},
                }
            },
        }
    ).encode()
    return (
        "POST",
        "/webhooks/stripe",
        body,
        {"Stripe-Signature": sign_stripe(body, WHSEC), "Content-Type": "application/json"},
    )


def signup_request(i: int, prefix: str) -> Request:
    body = json.dumps(
        {
            "type": "user.created",
            "data": {
                "user_id": f"u_{prefix}_{i}",
                "email": f"u{i}@example.com",
                "name": "Bench User",
            },
        }
    )
    msg_id = f"msg_{prefix}_{i}"
    return (
        "POST",
        "/webhooks/signup",
        body.encode(),
        {**sign_standard(body, msg_id, secret=SIGNUP_WHSEC), "Content-Type": "application/json"},
    )


def health_request(_i: int, _prefix: str) -> Request:
    return ("GET", "/healthz", b"", {})


def _client(port: int, reqs: list[Request], seconds: float, out: mp.Queue) -> None:
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    lat, statuses, i = [], {}, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and i < len(reqs):
        method, path, body, headers = reqs[i]
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t0)
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        i += 1
    out.put((lat, statuses))


def load(
    port: int,
    make: Callable[[int, str], Request],
    seconds: float,
    clients: int = 4,
    per_client: int = 60_000,
) -> dict:
    """Closed-loop load from `clients` processes; requests/s and latency percentiles."""
    out: mp.Queue = mp.Queue()
    tag = f"{os.getpid()}{int(time.time() * 1000) % 10**8}"
    procs = [
        mp.Process(
            target=_client,
            args=(port, [make(c * per_client + i, tag) for i in range(per_client)], seconds, out),
        )
        for c in range(clients)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    lat = [x for r, _ in results for x in r]
    statuses: dict[int, int] = {}
    for _, s in results:
        for k, v in s.items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "rps": len(lat) / min(elapsed, seconds + 0.5),
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "statuses": statuses,
    }


WRK_SCRIPT = """
-- Cycles through pre-signed requests read from REQUESTS_FILE (body<TAB>signature a line);
-- each wrk thread takes its own share, so no event is sent twice.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local reqs, i = {}, 0
function init(args)
  local threads, n = tonumber(os.getenv("WRK_THREADS")), 0
  for line in io.lines(os.getenv("REQUESTS_FILE")) do
    if n % threads == id then
      local body, sig = line:match("^(.-)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/webhooks/stripe",
        {["Content-Type"] = "application/json", ["Stripe-Signature"] = sig}, body)
    end
    n = n + 1
  end
end
function request()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
"""


def wrk(
    url: str,
    seconds: float,
    script: str | None = None,
    env: dict | None = None,
    connections: int = 16,
) -> dict:
    """wrk -t2 against `url`; requests/s, latency percentiles and non-2xx answers."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, timeout=seconds + 60, env=env
    ).stdout

    def ms(p: str) -> float:
        value, unit = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    non2xx = re.search(r"Non-2xx[^:]*:\s+(\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "statuses": "see wrk",
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


# The stack.


class Stack:
    """gunicorn receiver, Celery worker and the emulator, on the Redis at `redis_url`;
    `stop` ends the processes and removes the prefix's keys and the log folder."""

    def __init__(
        self,
        prefix: str,
        latency_ms: float = 0.0,
        pool: str = "threads",
        concurrency: int = 16,
        web: bool = True,
        rate_limit: float = 0.0,
        our_limit: float | None = 0.0,
        redis_url: str = REDIS_URL,
    ) -> None:
        self.prefix = prefix
        self.redis_url = redis_url
        self.emulator = EmulatorServer("127.0.0.1", 0).start()
        self.emulator.state.set_faults({"latency_ms": latency_ms, "rate_limit": rate_limit})
        self.port = free_port()
        self.env = clean_env(
            REDIS_URL=redis_url,
            STREAM_PREFIX=prefix,
            STRIPE_SECRET_KEY=KEY,
            STRIPE_API_BASE=self.emulator.url,
            STRIPE_WEBHOOK_SECRET=WHSEC,
            SIGNUP_WEBHOOK_SECRET=SIGNUP_WHSEC,
            PYTHONPATH=str(ROOT),
            WORKER_POOL=pool,
            WORKER_CONCURRENCY=str(concurrency),
            RETRY_BASE_DELAY="0.2",
            RETRY_MAX_DELAY="1",
        )
        if our_limit is not None:  # None: the default paces of the key's mode
            self.env["STRIPE_RATE_LIMIT"] = str(our_limit)
            if not our_limit:  # no pace: the endpoints' (24.25/s each by default) off too
                self.env["STRIPE_ENDPOINT_RATE"] = "0"
        self.logdir = Path(tempfile.mkdtemp(prefix="bench-"))
        self.procs: list[Process] = []
        if web:
            self.web()
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def web(self, workers: int = 2) -> WebProcess:
        """The receiver on `self.port`, answering when this returns."""
        web = WebProcess(self.env, self.logdir / "web.log", workers, self.port)
        self.procs.append(web)
        return web

    def gthread(self, workers: int = 2, threads: int = 4) -> Process:
        """The receiver under plain gunicorn with gthread workers (the former set-up), for
        comparison; `url` set, answering when this returns."""
        argv = [
            *(sys.executable, "-m", "gunicorn", "--no-control-socket"),
            *("-w", str(workers), "--threads", str(threads)),
            *("-b", f"127.0.0.1:{self.port}", "webhooks:create_app()"),
        ]
        proc = Process(argv, self.env, self.logdir / "gunicorn.log").start()
        self.procs.append(proc)
        proc.url = f"http://127.0.0.1:{self.port}"  # type: ignore[attr-defined]
        wait_http(proc.url + "/healthz")  # type: ignore[attr-defined]
        return proc

    def worker(self) -> Process:
        proc = Process(cli("worker"), self.env, self.logdir / "worker.log").start()
        self.procs.append(proc)
        return proc

    def rss_mb(self, proc: Process) -> float:
        """RSS of a process and its children (gunicorn or Celery's pool), in MB."""
        pids = [proc.pid]
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop(30)
        self.emulator.stop()
        keys = list(self.redis.scan_iter(f"{self.prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            self.redis.delete(*keys[i : i + 1000])
        forget_kombu_bindings(self.redis, self.prefix)
        shutil.rmtree(self.logdir, ignore_errors=True)


def forget_kombu_bindings(client: redis.Redis, prefix: str) -> None:
    """Remove what a plain Celery app (the peer) leaves outside `prefix`: kombu keeps each
    exchange's bindings in `_kombu.binding.<exchange>` sets (kombu/transport/redis.py,
    keyprefix_queue), one member per queue, and kombu 5.7 also `binding_permanent` and a
    `binding_deadlines` sorted set. Only members naming the prefix's queues or its worker
    (`-n PREFIX@host`) go; a set left empty is gone with them, as Redis has it."""
    for key in client.scan_iter("_kombu.binding*", count=1000):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "set":
            ours = [m for m in client.smembers(key) if prefix.encode() in _bytes(m)]
            if ours:
                client.srem(key, *ours)
        elif kind == "zset":
            ours = [m for m in client.zrange(key, 0, -1) if prefix.encode() in _bytes(m)]
            if ours:
                client.zrem(key, *ours)
        elif prefix in (key.decode() if isinstance(key, bytes) else key):
            client.delete(key)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def drain(stack: Stack, n: int, stream: str = "customers", timeout: float = 600) -> float:
    """Seconds until `n` entries are on the stream (or the error stream)."""
    t0 = time.perf_counter()
    key = f"{stack.prefix}:{stream}"
    while stack.redis.xlen(key) + stack.redis.xlen(f"{stack.prefix}:errors") < n:
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"only {stack.redis.xlen(key)} of {n} entries after {timeout}s")
        time.sleep(0.01)
    return time.perf_counter() - t0


def queue_signups(prefix: str, n: int, redis_url: str = REDIS_URL) -> None:
    """`n` signups (u0..u{n-1}) queued once each under `prefix`, as the receiver queues them."""
    from webhooks.signup import signup_component
    from worker.queue import Enqueuer
    from worker.settings import Settings
    from worker.work import Work

    settings = Settings(redis_url=redis_url, stream_prefix=prefix)
    enqueuer = Enqueuer(redis.Redis.from_url(redis_url), settings)
    for i in range(n):
        _u, spec = signup_component(
            {"type": "user.created", "data": {"user_id": f"u{i}", "email": f"u{i}@example.com"}}
        )
        enqueuer.enqueue_once(Work.for_component(spec, "signup", f"msg_{i}"))
