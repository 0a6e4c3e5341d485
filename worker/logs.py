"""Logging for the project's processes: every line goes through `redact` on its way out."""

from __future__ import annotations

import logging
import sys

from worker.redact import redact


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks secrets in the whole line, traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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
