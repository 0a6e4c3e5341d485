"""The worker's Celery consumer: checks each message first, and waits out a full Redis.

Celery's own consumer stops the worker on a message whose body is not its
`[args, kwargs, embed]` and drops unknown tasks and bad arguments; here every message is
checked before its task's strategy sees it, and one that is not valid work is quarantined
(tasks/quarantine.py) and acknowledged. A Redis refusing writes for want of memory
(kombu records each message it takes with a write) is treated as a lost connection: the
consumer reconnects once Redis takes writes again, instead of the worker exiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer
from redis.exceptions import OutOfMemoryError
from vine import promise

from tasks.full_redis import wait_until_writable
from tasks.quarantine import check_message, decode_error, quarantine
from tasks.runtime import runtime_of
from worker import tracing
from worker.errors import InvalidMessage


class WorkConsumer(Consumer):
    """Celery's consumer, checking each message before its task's strategy runs."""

    # Set by Celery's __init__ from the connection's transport; celery-types leaves it out.
    connection_errors: tuple[type[BaseException], ...]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_errors = (*self.connection_errors, OutOfMemoryError)

    def connect(self) -> Any:
        connection = super().connect()
        self._state(True)  # the heartbeat says so from its next beat
        return connection

    def on_connection_error_before_connected(self, exc: Exception) -> None:
        self._state(False)
        super().on_connection_error_before_connected(exc)
        self._wait_if_full(exc)

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        self._state(False)
        super().on_connection_error_after_connected(exc)
        self._wait_if_full(exc)

    def _state(self, connected: bool) -> None:
        rt = runtime_of(self.app)
        rt.state.set_consumer_connected(connected)

    def _wait_if_full(self, exc: Exception) -> None:
        if isinstance(exc, OutOfMemoryError):
            rt = runtime_of(self.app)
            wait_until_writable(rt.redis, rt.settings)

    def create_task_handler(self, promise: type[promise] = promise) -> Callable[[Any], Any]:
        handle = super().create_task_handler(promise)
        rt = runtime_of(self.app)

        def on_task_received(message: Any) -> Any:
            headers = message.headers if isinstance(message.headers, dict) else {}
            task = headers.get("task")
            try:
                check_message(task, message.decode())
            except Exception as exc:  # whatever a body can make a decoder raise
                reason = exc.message if isinstance(exc, InvalidMessage) else decode_error(exc)
                raw = getattr(message, "_raw", None) or {"headers": headers, "body": message.body}
                # In the delivery's trace when the message names one (worker/tracing.py).
                parent = headers.get(tracing.TRACEPARENT)
                with tracing.span(
                    "quarantine", "consumer", parent=parent if isinstance(parent, str) else None
                ):
                    quarantine(rt, raw, reason, str(headers.get("id") or ""), str(task or ""))
                message.ack()
                return None
            return handle(message)

        return on_task_received
