"""`stripe-worker` (and `python -m worker`): the process's first lines, then the command
line (worker/cli.py).

`web` serves on gevent, and gevent must patch the standard library before anything imports
redis-py: redis/retry.py binds `from time import sleep` at import, so patched later (as
gunicorn's gevent worker does, after the fork) every Redis retry's backoff blocks all the
connections the process serves at once. In a Sentinel failover at 20 signups a second
(bench/failover_run.py, slowest_healthz_s) the slowest /healthz took 0.64 s so, 0.01 s
patched here; gevent's own advice is to patch "as early as possible"
(https://www.gevent.org/api/gevent.monkey.html)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["web"]:
        from gevent import monkey

        monkey.patch_all()  # the master too: no module it imports keeps a blocking socket
    from worker.cli import main as command_line

    return command_line(argv)


if __name__ == "__main__":
    sys.exit(main())
