"""How every command finds a running `stripe-worker dev`: a state file only this user reads."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from worker.settings import Settings


def state_path() -> Path:
    """Where a running `dev` leaves its URLs and generated secrets for `send` and `tail`."""
    return Path(tempfile.gettempdir()) / f"stripe-worker-dev-{os.getuid()}.json"


def read_state() -> dict[str, Any]:
    try:
        return json.loads(state_path().read_text())
    except (OSError, ValueError):
        return {}


def settings_with_dev() -> tuple[Settings, dict[str, Any]]:
    """Settings from the environment; where unset, those of a running `stripe-worker dev`."""
    state = read_state()
    overrides = {}
    if state and not os.environ.get("REDIS_URL"):
        overrides = {"redis_url": state["redis_url"], "stream_prefix": state["stream_prefix"]}
    return Settings.from_env(**overrides), state
