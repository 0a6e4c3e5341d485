"""How every command finds a running `stripe-worker dev`: a state file only this user reads.

`dev` writes it (its receiver, Redis, prefix, emulator, generated secrets and pid) and
removes it on exit. A command run beside it (run, check, tail, dlq, send, the example
agent) uses it when REDIS_URL is unset or names the same Redis: the dev's Redis and
prefix, its generated secrets where the vault has none, and its emulator when the Stripe
key is the one it generated. The command says so in one line on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.redact import redact_url
from worker.settings import Settings
from worker.vault import STRIPE_SECRET_KEY, Vault


def state_path(folder: Path | None = None) -> Path:
    """Where a running `dev` leaves what the other commands need: one file per user and
    checkout (the folder this package runs from), so a second checkout's commands never
    post to, or read the Redis of, the first one's `dev`."""
    checkout = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256(str(checkout).encode()).hexdigest()[:12]
    where = folder or Path(tempfile.gettempdir())
    return where / f"stripe-worker-dev-{os.getuid()}-{digest}.json"


def read_state() -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(state_path().read_text())
        return state
    except (OSError, ValueError):
        return {}


def running_dev() -> dict[str, Any]:
    """The state of a `dev` that is still running; {} when none is (or it was killed)."""
    state = read_state()
    try:
        os.kill(int(state["pid"]), 0)
    except (KeyError, ValueError, TypeError, ProcessLookupError):
        return {}
    except PermissionError:  # alive, another user's: its file is not ours to use
        return {}
    return state


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Target:
    """What a command works against: settings, a vault, and the running dev (or {})."""

    settings: Settings
    vault: Vault
    dev: Mapping[str, Any] = field(default_factory=dict)


def find_target(
    environ: Mapping[str, str] | None = None, say: Callable[[str], None] = _stderr
) -> Target:
    """Settings from the environment, completed by a running `dev` where it applies."""
    env = os.environ if environ is None else environ
    settings = Settings.from_env(env)  # a bad setting is refused before anything else
    dev = running_dev()
    url = env.get("REDIS_URL")
    if not dev or (url and url != dev.get("redis_url")):
        return Target(settings, Vault(settings.secrets_dir, env))
    if not env.get("STREAM_PREFIX"):
        settings = settings.with_(stream_prefix=dev["stream_prefix"])
    settings = settings.with_(redis_url=dev["redis_url"])
    own = Vault(settings.secrets_dir, env)
    generated = {
        name: value for name, value in (dev.get("secrets") or {}).items() if own.find(name) is None
    }
    if STRIPE_SECRET_KEY in generated:
        settings = settings.with_(stripe_api_base=dev["stripe_api_base"])
    vault = Vault(settings.secrets_dir, {**{n.upper(): v for n, v in generated.items()}, **env})
    say(
        f"dev       using the running `stripe-worker dev` (pid {dev['pid']}): "
        f"receiver {dev['receiver']}, Redis {redact_url(settings.redis_url)}"
    )
    return Target(settings, vault, dev)
