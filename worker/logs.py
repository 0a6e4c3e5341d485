"""Logging for the project's processes: every line goes through `redact` on its way out."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

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


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """configure_logging's handler; `message_only` when its lines are the message alone."""

    def __init__(self, fmt: str) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(RedactingFormatter(fmt))
        self.message_only = fmt == "%(message)s"


def configure_logging(level: int | str = logging.INFO, fmt: str = "%(message)s") -> None:
    """One redacting handler on the root logger, to stderr."""
    handler = _Handler(fmt)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # The SDK logs each request URL at INFO; ours say what matters.
    logging.getLogger("stripe").setLevel(logging.WARNING)


def info_line_writer(logger: logging.Logger) -> Callable[[str], None]:
    """A writer of INFO lines from `logger`, for a line per request on a hot path.

    Where the line would reach only configure_logging's handler and that handler writes
    the message alone (`stripe-worker web`), the writer redacts the line and writes it to
    the handler's stream itself: a LogRecord, the handler's lock and its formatter cost
    60 of a webhook answer's 810 µs of CPU under gunicorn (bench/receiver_profile.py,
    against a checkout writing the line the same way). The
    line is the same. Anywhere else (dev's format with time and level, pytest's capture,
    a handler of the user's) it is logged as any other line. Decided once, when called.
    """
    handler = _only_handler(logger)
    if handler is None:
        return lambda line: logger.info("%s", line)
    if not logger.isEnabledFor(logging.INFO) or handler.level > logging.INFO:
        return lambda line: None
    stream = handler.stream

    def write(line: str) -> None:
        stream.write(redact(line) + "\n")
        stream.flush()

    return write


def _only_handler(logger: logging.Logger) -> _Handler | None:
    """The one message-only handler of configure_logging a record from `logger` reaches,
    with no filter on its way; None otherwise."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        found += current.handlers
        if not current.propagate:
            break
        current = current.parent
    if len(found) != 1:
        return None
    handler = found[0]
    if not isinstance(handler, _Handler) or not handler.message_only or handler.filters:
        return None
    return handler
