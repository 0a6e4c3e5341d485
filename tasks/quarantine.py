"""Quarantine: a queue message that is not a piece of work we can run is set aside, whole.

Every message is checked before Celery sees it: a known task name, a body that is JSON and
Celery's `[args, kwargs, embed]`, no args, a kwarg `work` that is a valid `Work` for that
task, and no other kwarg than those in OTHER_KWARGS (with its type). One that
fails goes, whole, to the error stream as `error_type` `invalid_message` (with the
reason, and the message as kombu read it in `message`), and is acknowledged; the worker
goes on to the next one. Before this, a body that was not a
3-item list stopped the worker on every restart, and bad arguments were dropped unseen.

`quarantine()` is also what a transport can call for a message it cannot even read; the
consumer that checks each message is tasks/consumer.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any

from tasks.entries import QuarantinedEntry, entry_fields
from tasks.runtime import Runtime
from worker.errors import InvalidMessage
from worker.work import TASK_NAMES, Work

log = logging.getLogger("stripe_worker.quarantine")


# The keyword arguments a task takes besides `work`, with their types: the holds the retry
# policy (tasks/retry_policy.py) counts ride on the message, so a 429 spends no attempt.
OTHER_KWARGS: dict[str, type] = {"held": int}


def check_message(task: object, body: object) -> Work:
    """The message's Work; InvalidMessage says what is wrong with it."""
    if task not in TASK_NAMES:
        raise InvalidMessage(f"unknown task {str(task)[:100]!r}")
    if not isinstance(body, list) or len(body) != 3:
        raise InvalidMessage("the body is not Celery's [args, kwargs, embed]")
    args, kwargs, embed = body
    if args != [] or not isinstance(kwargs, dict) or "work" not in kwargs:
        raise InvalidMessage("the task's arguments are not keyword arguments with `work`")
    for name, value in kwargs.items():
        if name != "work" and name not in OTHER_KWARGS:
            raise InvalidMessage(f"the task takes no argument {name[:50]!r}")
        if name != "work" and type(value) is not OTHER_KWARGS[name]:
            raise InvalidMessage(f"the task's argument {name!r} has the wrong type")
    if embed is not None and not isinstance(embed, dict):
        raise InvalidMessage("the body's third item is not an object")
    work = Work.from_json(kwargs["work"])
    if work.task != task:
        raise InvalidMessage(f"the work is for {work.task}, the message for {task}")
    return work


def quarantine(rt: Runtime, raw: Any, reason: str, message_id: str = "", task: str = "") -> str:
    """Put a message on the error stream, whole, once however often it comes; its entry id."""
    text = raw if isinstance(raw, str) else json.dumps(raw, default=_bytes_as_base64)
    fingerprint = hashlib.sha256(text.encode()).hexdigest()[:32]
    entry = QuarantinedEntry(
        source_id=message_id or f"sha256:{fingerprint}",
        error_message=reason,
        task=task,
        message=text,
    )
    published = rt.publisher.publish(
        entry.stream, f"quarantined:{fingerprint}", entry_fields(entry)
    )
    log.error("quarantined message %s (%s): %s", message_id or "-", task or "-", reason)
    return published.entry_id


def _bytes_as_base64(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return repr(value)


def decode_error(exc: Exception) -> str:
    """The reason recorded for a body no decoder could read."""
    return f"the body cannot be decoded ({exc.__class__.__name__})"
