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
        patch_for_web()
    from worker.cli import main as command_line

    return command_line(argv)


def patch_for_web() -> None:
    """gevent's patch, once, in gunicorn's master too: no module it imports keeps a
    blocking socket or sleep. Reached late (redis already imported) only when `web` is
    started some other way than this module (`python -m worker.cli web`); gevent's warning
    then names redis.asyncio, which imports from ssl directly and which `web` never uses."""
    import warnings

    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        warnings.filterwarnings("ignore", category=monkey.MonkeyPatchWarning)
        monkey.patch_all()


if __name__ == "__main__":
    sys.exit(main())
