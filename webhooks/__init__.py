"""The receiver: verify webhooks, queue their work once, answer fast.

Nothing is imported here: `stripe-worker web` must set PROMETHEUS_MULTIPROC_DIR before
prometheus_client is first imported (webhooks/server.py).
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """webhooks.app.create_app: the Flask receiver."""
    from webhooks.app import create_app as create

    return create(*args, **kwargs)
