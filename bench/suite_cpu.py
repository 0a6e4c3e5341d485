"""Where the test suite's CPU goes: every Python process it starts, by kind.

    .venv/bin/python bench/suite_cpu.py                 # the whole suite (2-3 minutes)
    .venv/bin/python bench/suite_cpu.py -m "not slow"   # any pytest arguments

On a slow 2-core machine the suite is CPU-bound (about 345 s of CPU in 175-200 s, measured
2026-12-04; on a faster one 145 s in 102 s, where it mostly waits), and its time is then the
sum of what its processes cost: the pytest-xdist workers (collection and
the in-process tests), and the worker, gunicorn and CLI processes the tests start. Each
Python process the run starts (that keeps PYTHONPATH) reports its own CPU time when it
exits, through a sitecustomize module this script puts first on PYTHONPATH; a process
killed by SIGKILL reports nothing, and redis-server and Chromium are not Python.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

ROOT = Path(__file__).resolve().parent.parent

# Written into each process: at exit, its CPU time and its command line, one file a process.
REPORTER = """
import atexit, json, os, resource, sys

def _report(folder=os.environ.get("SUITE_CPU_FOLDER")):
    if not folder:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    record = {"argv": list(getattr(sys, "orig_argv", sys.argv)),
              "cpu": usage.ru_utime + usage.ru_stime}
    with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as out:
        json.dump(record, out)

atexit.register(_report)
"""


def kind(argv: list[str]) -> str:
    """What a process was, from its command line."""
    args = argv[1:]
    if args[:2] == ["-m", "worker"] and len(args) > 2:
        return f"stripe-worker {args[2]}"
    if args[:1] == ["-m"] and len(args) > 1:
        return f"python -m {args[1]}"
    if args[:1] in (["-c"], ["-u"]) or (len(args) > 1 and args[1] == "-c"):
        joined = " ".join(args)
        return "pytest-xdist worker" if "exec(eval(sys.stdin" in joined else "python -c"
    if args and args[0].endswith("stripe-worker") and len(args) > 1:
        return f"stripe-worker {args[1]}"
    return Path(args[0]).name if args else "python"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="suite-cpu-") as folder:
        reports = Path(folder) / "reports"
        reports.mkdir()
        (Path(folder) / "sitecustomize.py").write_text(REPORTER)
        path = os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, PYTHONPATH=path, SUITE_CPU_FOLDER=str(reports))
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", *args.pytest_args], cwd=ROOT, env=env
        )
        wall = time.monotonic() - started
        records = [json.loads(p.read_text()) for p in reports.glob("*.json")]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for record in records:
        by_kind[kind(record["argv"])].append(record["cpu"])
    total = sum(sum(cpus) for cpus in by_kind.values())
    load = os.getloadavg()[0]
    print(f"\nmachine: {os.cpu_count()} cores, load average {load:.2f} at the end")
    print(f"pytest exit {run.returncode}; {wall:.1f} s; {len(records)} Python processes")
    print(f"{total:.1f} s of CPU reported, {total / wall:.2f} cores on average\n")
    print(f"| {'process':34} | count | CPU s | CPU s each |")
    print(f"|{'-' * 36}|-------|-------|------------|")
    for name, cpus in sorted(by_kind.items(), key=lambda item: -sum(item[1])):
        each = sum(cpus) / len(cpus)
        print(f"| {name:34} | {len(cpus):5} | {sum(cpus):5.1f} | {each:10.2f} |")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
