"""Logging for the project's processes: every line goes through `redact` on its way out."""

from __future__ import annotations

import logging
import sys

from worker.redact import redact


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks secrets in the whole line, traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _NotCeleryReconnects(logging.Filter):
    """Drops Celery's consumer "Cannot connect to ...: Trying again in N seconds" records
    (three lines each): the worker's Outage report (worker/redis_problems.py) says the same
    once, with the redacted URL, and then once a minute."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("consumer: Cannot connect to")


def quiet_broker_reconnects() -> None:
    """For `stripe-worker worker`: one voice for a Redis outage, not two."""
    logging.getLogger("celery.worker.consumer.consumer").addFilter(_NotCeleryReconnects())


def configure_logging(level: int | str = logging.INFO, fmt: str = "%(message)s") -> None:
    """One redacting handler on the root logger, to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(fmt))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # The SDK logs each request URL at INFO; ours say what matters.
    logging.getLogger("stripe").setLevel(logging.WARNING)
