"""Ours next to the plain way (bench/peer_app.py), measured in one run on this machine.

    apt-get install wrk                  # Debian's package: the load generator
    python bench/side_by_side.py --write # 3 runs, ~15 minutes; rewrites its section of
                                         # docs/benchmarks.md (medians, and each run's ratios)
    python bench/side_by_side.py --quick --runs 1   # prints only

Receiver: wrk (2 threads) at 16 and 64 connections against each app's trivial JSON route and
its webhook route (unique, correctly signed Stripe events), 2 gunicorn workers each: ours
`stripe-worker web` (gevent), the peer gunicorn sync workers; with the CPU the workers
spent per answer, and their RSS before and after. Worker: N queued signups drained by one
worker, 16 then 64 threads, emulator at 0 ms, paces off, the cap on calls in flight at its
default (20); CPU is the
worker process tree's user+system time from its first result to its last, divided by the
signups; RSS at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(BENCH.parent)

from bench.harness import (  # noqa: E402
    DOC,
    WRK_SCRIPT,
    Section,
    Stack,
    drain,
    machine,
    queue_signups,
    render,
    stripe_request,
    wrk,
)
from tests.support import Process, wait_for, wait_http  # noqa: E402
from worker.devtools.local import free_port  # noqa: E402

EVENTS_PER_S = 6000  # signed events made per second of wrk: more than either receiver answers
TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """The process and its descendants (gunicorn's or Celery's children)."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").iterdir():
            kids = task / "children"
            if kids.exists():
                pids += [int(p) for p in kids.read_text().split()]
        i += 1
    return pids


def cpu_s(pid: int) -> float:
    total = 0
    for p in tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def rss_mb(pid: int) -> list[float]:
    """RSS of each process in the tree, MB (the gunicorn arbiter first)."""
    out = []
    for p in tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out.append(int(line.split()[1]) / 1024)
    return out


def redis_cpu_s(stack: Stack) -> float:
    """redis-server's CPU seconds so far (INFO cpu)."""
    info = stack.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def requests_file(n: int, tag: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="sbs-"))
    with open(folder / "requests.txt", "w") as f:
        for i in range(n):
            _m, _p, body, headers = stripe_request(i, tag)
            f.write(f"{body.decode()}\t{headers['Stripe-Signature']}\n")
    (folder / "replay.lua").write_text(WRK_SCRIPT)
    return folder


def peer_env(stack: Stack) -> dict:
    return dict(
        stack.env,
        PEER_PREFIX=stack.prefix,
        PYTHONPATH=f"{BENCH}{os.pathsep}{stack.env.get('PYTHONPATH', '')}",
    )


def receiver(which: str, seconds: float) -> dict:
    tag = f"sbs{which}{os.getpid()}"
    stack = Stack(tag, web=False)
    try:
        if which == "ours":
            url = stack.web(2).url
            pid = stack.procs[-1].pid
        else:
            port = free_port()
            argv = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"]
            proc = Process([*argv, "peer_app:app"], peer_env(stack), stack.logdir / "p.log")
            stack.procs.append(proc.start())
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/healthz")
            pid = proc.pid
        # A route answers once one worker has booted: both, before their RSS is read.
        wait_for(lambda: len(tree(pid)) == 3, timeout=30)
        row: dict = {"rss_start": rss_mb(pid)[1:]}  # the workers, not the arbiter
        for c in (16, 64):
            # Events of their own for each run: one sent again would be a (cheaper) duplicate.
            folder = requests_file(int(seconds * EVENTS_PER_S), f"{tag}c{c}")
            env = dict(os.environ, REQUESTS_FILE=str(folder / "requests.txt"), WRK_THREADS="2")
            for route, path, script in (
                ("trivial", "/healthz", None),
                ("hook", "/webhooks/stripe", str(folder / "replay.lua")),
            ):
                cpu0, redis0 = cpu_s(pid), redis_cpu_s(stack)
                result = wrk(url + path, seconds, script, env, c)
                answers = max(1.0, result["rps"] * seconds)
                # The workers' CPU per answer: what bounds req/s once the cores are busy,
                # and far steadier than req/s on a machine shared with other work.
                result["cpu_us"] = (cpu_s(pid) - cpu0) * 1e6 / answers
                # redis-server's, on the same cores (other users of the server count in).
                result["redis_us"] = (redis_cpu_s(stack) - redis0) * 1e6 / answers
                row[f"{route}{c}"] = result
        row["rss"] = rss_mb(pid)[1:]
        return row
    finally:
        stack.stop()


def worker(which: str, n: int, threads: int, env: dict[str, str] | None = None) -> dict:
    """`env`: settings of ours to measure against the defaults (a profile, an A/B)."""
    stack = Stack(f"sbsw{which}{os.getpid()}", web=False, concurrency=threads)
    # The paces off, as the plain task has none: Stack turns off the global pace
    # (STRIPE_RATE_LIMIT=0) and each endpoint's (25/s by default would cap ours at
    # Stripe's). The concurrency cap (STRIPE_CONCURRENCY, 20) stays at its default, as the
    # defaults are the product: its cost is ours (it rides on round trips a signup makes
    # anyway, tasks/turn.lua and the publish), and at 64 threads it binds (about a fifth
    # of the calls find it full), as it would against Stripe.
    stack.env["STRIPE_ENDPOINT_RATE"] = "0"
    stack.env.update(env or {})
    try:
        if which == "ours":
            queue_signups(stack.prefix, n)
            proc = stack.worker()
            stream = "customers"
        else:
            os.environ["PEER_PREFIX"] = stack.prefix
            from bench import peer_app

            peer_app.PREFIX = stack.prefix
            peer_app.celery.conf.task_default_queue = f"{stack.prefix}:q"
            for i in range(n):
                peer_app.create_customer.delay(f"msg_{i}", f"u{i}@example.com", f"u{i}")
            argv = [sys.executable, "-m", "celery", "-A", "peer_app:celery", "worker"]
            argv += [
                "--pool",
                "threads",
                "-c",
                str(threads),
                "-Q",
                f"{stack.prefix}:q",
                # As ours logs by default (INFO: each task received and succeeded), and as
                # Celery's first-steps guide starts a worker (--loglevel=INFO).
                "-l",
                "INFO",
            ]
            proc = Process(argv, peer_env(stack), stack.logdir / "peer.log").start()
            stack.procs.append(proc)
            stream = "customers"
        drain(stack, 1, stream)
        cpu0, t0 = cpu_s(proc.pid), time.perf_counter()
        drain(stack, n, stream)
        seconds, cpu = time.perf_counter() - t0, cpu_s(proc.pid) - cpu0
        return {
            "tasks_per_s": (n - 1) / seconds,
            "cpu_ms": cpu * 1000 / (n - 1),
            "rss_mb": sum(rss_mb(proc.pid)),
            "created": stack.emulator.state.stats["created"]["test"],
        }
    finally:
        stack.stop()


def median_of(runs: list) -> object:
    """Each figure's median over the runs (lists element by element; other values the
    first run's)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: median_of([r[k] for r in runs]) for k in first}
    if isinstance(first, list):
        return [median_of([r[i] for r in runs]) for i in range(len(first))]
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return statistics.median(runs)
    return first


def ratios(run: dict) -> dict[str, float]:
    """The figures the issue sets targets on, of one run."""
    rx, out = run.get("rx"), {}
    for c in (16, 64) if rx else ():
        t, h = rx["ours"][f"trivial{c}"], rx["ours"][f"hook{c}"]
        out[f"of trivial c{c}"] = h["rps"] / t["rps"]
        out[f"p99 vs trivial c{c}"] = h["p99_ms"] / t["p99_ms"]
        out[f"trivial/webhook CPU c{c}"] = t["cpu_us"] / h["cpu_us"]
        out[f"webhook req/s ours/plain c{c}"] = h["rps"] / rx["peer"][f"hook{c}"]["rps"]
    for threads in (16, 64) if "wk16" in run else ():
        o, p = run[f"wk{threads}"]["ours"], run[f"wk{threads}"]["peer"]
        out[f"worker tasks/s ours/plain x{threads}"] = o["tasks_per_s"] / p["tasks_per_s"]
        out[f"worker CPU ours/plain x{threads}"] = o["cpu_ms"] / p["cpu_ms"]
    return out


def add_tables(section: Section, run: dict) -> None:
    """The receiver's and the worker's tables of `run` (medians), with the ratios between;
    of those that ran (--only)."""
    if "rx" in run:
        add_receiver_tables(section, run)
    if "wk16" in run:
        add_worker_table(section, run)


def add_receiver_tables(section: Section, run: dict) -> None:
    rx = run["rx"]
    rows = []
    for which, label in (
        ("ours", "ours (`stripe-worker web`, gevent)"),
        ("peer", "plain (sync, construct_event + .delay())"),
    ):
        for c in (16, 64):
            t, h = rx[which][f"trivial{c}"], rx[which][f"hook{c}"]
            rows.append(
                (
                    label,
                    c,
                    f"{t['rps']:.0f}",
                    f"{h['rps']:.0f}",
                    f"{h['rps'] / t['rps']:.2f}",
                    f"{t['p50_ms']:.1f} / {t['p99_ms']:.1f}",
                    f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f}",
                    f"{h['p99_ms'] / t['p99_ms']:.1f}x",
                    f"{t['cpu_us']:.0f} / {h['cpu_us']:.0f}",
                    f"{h['redis_us']:.0f}",
                    int(h["non2xx"]),
                )
            )
    section.table(
        (
            "receiver (2 gunicorn workers, wrk -t2)",
            "c",
            "trivial req/s",
            "webhook req/s",
            "of trivial",
            "trivial p50/p99 ms",
            "webhook p50/p99 ms",
            "p99 vs trivial",
            "CPU µs per answer, trivial / webhook",
            "redis-server CPU µs per webhook",
            "non-2xx",
        ),
        rows,
    )
    ours, peer = rx["ours"], rx["peer"]

    def mb(values: list[float]) -> str:
        return ", ".join(f"{v:.0f}" for v in values)

    section.say(
        f"webhook req/s, ours / plain: c=16 "
        f"**{ours['hook16']['rps'] / peer['hook16']['rps']:.2f}**, "
        f"c=64 **{ours['hook64']['rps'] / peer['hook64']['rps']:.2f}**. "
        f"RSS per gunicorn worker at start / after the runs: ours {mb(ours['rss_start'])} / "
        f"{mb(ours['rss'])} MB, plain {mb(peer['rss_start'])} / {mb(peer['rss'])} MB."
    )


def add_worker_table(section: Section, run: dict) -> None:
    rows = []
    for threads in (16, 64):
        results = run[f"wk{threads}"]
        for which, label in (
            ("ours", "ours (exactly once)"),
            ("peer", "plain Celery task, acks_late"),
        ):
            r = results[which]
            rows.append(
                (
                    label,
                    threads,
                    f"{r['tasks_per_s']:.0f}",
                    f"{r['cpu_ms']:.2f}",
                    f"{r['rss_mb']:.0f}",
                    int(r["created"]),
                )
            )
        o, p = results["ours"], results["peer"]
        rows.append(
            (
                "ours / plain",
                threads,
                f"**{o['tasks_per_s'] / p['tasks_per_s']:.2f}**",
                f"**{o['cpu_ms'] / p['cpu_ms']:.2f}**",
                f"{o['rss_mb'] / p['rss_mb']:.2f}",
                "",
            )
        )
    section.table(
        (
            "worker (one, emulator at 0 ms, paces off, in-flight cap 20)",
            "threads",
            "tasks/s",
            "CPU ms per signup",
            "RSS MB",
            "created",
        ),
        rows,
    )


def add_spread(section: Section, runs: list[dict]) -> None:
    """Each target figure's value in every run: how far one run is from another here."""
    each = [ratios(run) for run in runs]
    section.table(
        ("figure", *(f"run {i + 1}" for i in range(len(runs)))),
        [(name, *(f"{r[name]:.2f}" for r in each)) for name in each[0]],
    )


def one_run(seconds: float, n: int, only: str = "") -> dict:
    run: dict = {}
    if only != "worker":
        run["rx"] = {w: receiver(w, seconds) for w in ("ours", "peer")}
    if only != "receiver":
        run["wk16"] = {w: worker(w, n, 16) for w in ("ours", "peer")}
        run["wk64"] = {w: worker(w, n // 2, 64) for w in ("ours", "peer")}
    return run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="whole runs; the table has medians")
    parser.add_argument("--write", action="store_true", help="rewrite its section of the docs")
    parser.add_argument(
        "--only", choices=("receiver", "worker"), help="that half only (prints; not --write)"
    )
    args = parser.parse_args()
    if args.only and args.write:
        parser.error("--write rewrites the whole section: run both halves")
    seconds, n = (3, 600) if args.quick else (5, 2000)
    on = machine()  # its load average is the one at the start
    runs = []
    for i in range(args.runs):
        runs.append(one_run(seconds, n, args.only or ""))
        print(f"run {i + 1} of {args.runs}: " + ", ".join(
            f"{k} {v:.2f}" for k, v in ratios(runs[-1]).items()
        ), flush=True)  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    flags = (" --quick" if args.quick else "") + f" --runs {args.runs}" + (" --write" * args.write)
    section = Section("Side by side with the plain way", "bench/side_by_side.py")
    section.say(
        f"Measured {stamp} by `python bench/side_by_side.py{flags}` on "
        f"{on}; load average at the end {os.getloadavg()[0]:.2f} (other work on the "
        f"machine: compare the ratios, and the CPU per answer). Each figure is the median "
        f"of {args.runs} runs; wrk {seconds} s per row; {n} signups at 16 threads, "
        f"{n // 2} at 64. Both workers log at INFO."
    )
    add_tables(section, median_of(runs))  # type: ignore[arg-type]
    section.say(
        "CPU per answer is the gunicorn workers' user and system time over a wrk run "
        "divided by the answers: what bounds req/s once the cores are busy, and it moves "
        "far less with other work on the machine than req/s or the p99 do. The targets' "
        "figures in each run:"
    )
    add_spread(section, runs)
    text = render([section])
    print(text)
    if args.write:
        # Only this section is replaced: harness.write_page rewrites the page around the
        # sections of bench/run_all.py's scenarios, which this script is not one of.
        old = DOC.read_text()
        start = old.find(section.heading)
        if start >= 0:
            end = old.find("\n## ", start + len(section.heading))
            old = old[:start] + (old[end + 1 :] if end >= 0 else "")
        DOC.write_text(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
