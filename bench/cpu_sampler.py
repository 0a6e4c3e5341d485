"""A CPU-time sampler inside each gunicorn worker of `stripe-worker web`, for
bench/receiver_profile.py.

    python bench/cpu_sampler.py PORT OUT_FOLDER    # the receiver, sampled, until SIGTERM

A wall-clock sampler (py-spy) counts a worker that waits for a core as busy in the line it
waits at; on a shared 2-core machine that is mostly a socket's send, after it woke wrk or
Redis (measured: 45% of py-spy's samples in `send`, while system time was 11% of the
worker's CPU). ITIMER_PROF instead counts the process's CPU time, user and system
(setitimer(2)), so a SIGPROF arrives after each INTERVAL of CPU used, and Python runs its
handler with the frame that was running: the running greenlet's. The stacks are written as
py-spy's raw format ("frame;frame;... count", the root first) when the worker exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import sysconfig
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

if not __package__:  # run as a file: the project folder first, as `python -m bench.x` has it
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

INTERVAL = 0.0005  # of CPU time between samples
_ROOTS = sorted(
    {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"], str(Path.cwd())},
    key=len,
    reverse=True,
)
_stacks: Counter[str] = Counter()
_labels: dict[Any, str] = {}


def _label(frame: FrameType) -> str:
    code = frame.f_code
    key = (code, frame.f_lineno)
    label = _labels.get(key)
    if label is None:
        path = code.co_filename
        for root in _ROOTS:
            if path.startswith(root):
                path = path[len(root) :].lstrip("/")
                break
        label = _labels[key] = f"{code.co_qualname} ({path}:{frame.f_lineno})"
    return label


def _sample(_signum: int, frame: FrameType | None) -> None:
    frames = []
    while frame is not None:
        frames.append(_label(frame))
        frame = frame.f_back
    _stacks[";".join(reversed(frames))] += 1


def start(_worker: object) -> None:
    """gunicorn's post_worker_init: the app is loaded, requests come next."""
    signal.signal(signal.SIGPROF, _sample)
    signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)


def stop(_server: object, _worker: object) -> None:
    """gunicorn's worker_exit, in the worker: write what was sampled."""
    signal.setitimer(signal.ITIMER_PROF, 0, 0)
    folder = Path(os.environ["CPU_SAMPLES"])
    lines = (f"{stack} {n}" for stack, n in _stacks.items())
    (folder / f"{os.getpid()}.txt").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description="the receiver, its workers' CPU sampled")
    parser.add_argument("port", type=int)
    parser.add_argument("out", help="a folder: each worker writes <pid>.txt there at exit")
    args = parser.parse_args()
    from webhooks.server import serve

    os.environ["CPU_SAMPLES"] = args.out
    hooks = {"post_worker_init": start, "worker_exit": stop}
    return serve("127.0.0.1", args.port, 2, hooks=hooks)


if __name__ == "__main__":
    sys.exit(main())
