"""The queue message for a `Work`: Celery's task protocol 2 inside kombu's Redis envelope.

Built here by hand so that the receiver queues work without a Celery app, the tasks or
the Stripe SDK. What it must match is pinned in pyproject.toml (celery and kombu 5.x)
and checked by tests/test_envelope_contract.py against Celery's own `as_task_v2` and a
real worker. `open_envelope` is the reverse, for the reaper and tools that read a queue.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from typing import Any

from worker.errors import InvalidMessage
from worker.keys import QUEUE
from worker.work import Work

_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
_EMBED = json.dumps(
    {"callbacks": None, "errbacks": None, "chain": None, "chord": None}, separators=(",", ":")
)


def new_message_id() -> str:
    """A random (version 4) UUID's text, as `str(uuid.uuid4())` makes it: the same 16
    random bytes with the version and variant bits set (RFC 9562 section 5.4), at a third
    of its CPU (no UUID object; two a message)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# The first hex digit of the fourth group: its top two bits are the variant, 10.
_VARIANT = {f"{n:x}": f"{0b1000 | (n & 0b0011):x}" for n in range(16)}


def _envelope_template(traced: bool) -> str:
    """The envelope's JSON with a %-placeholder for each value that changes per message:
    made once, so a message costs a few escaped strings, not a json.dumps of the whole."""
    headers: dict[str, Any] = {
        "lang": "py",
        "task": "\x00task",
        "id": "\x00id",
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": "\x00id",
        "parent_id": None,
        # Celery logs these on receipt: ids only, never a payload.
        "argsrepr": "()",
        "kwargsrepr": "\x00summary",
        "origin": _ORIGIN,
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    if traced:
        headers["traceparent"] = "\x00trace"
    envelope = {
        "body": "\x00body",
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": "\x00id",
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": "\x00tag",
        },
    }
    text = json.dumps(envelope, separators=(",", ":")).replace("%", "%%")
    for name in ("task", "id", "summary", "body", "tag", "trace"):
        text = text.replace(json.dumps("\x00" + name), f"%({name})s")
    return text


_ENVELOPES = {traced: _envelope_template(traced) for traced in (False, True)}


def task_message(
    work: Work, message_id: str, summary: str = "", traceparent: str | None = None
) -> bytes:
    """The bytes kombu's Redis transport LPUSHes for `apply_async` of `work`'s task.

    `traceparent` (worker/tracing.py) rides as a custom header, as `apply_async(headers=...)`
    would put it: Celery hands custom headers to the task as `request.headers` and copies
    them onto its retries (`Context.as_execution_options`). OpenTelemetry's Celery
    instrumentation injects it only when a message is sent through `apply_async`, which
    this message never is, so the header is ours and the task reads it (tasks/customers.py).
    """
    # [args, kwargs, embed], the work's JSON made once (worker/work.py) spliced in.
    body = f'[[],{{"work":{work.json_text}}},{_EMBED}]'.encode()
    values = {
        "task": json.dumps(work.task),
        "id": json.dumps(message_id),
        "summary": json.dumps(summary or work.delivery_id),
        "body": f'"{base64.b64encode(body).decode()}"',
        "tag": f'"{new_message_id()}"',
        "trace": json.dumps(traceparent),
    }
    return (_ENVELOPES[bool(traceparent)] % values).encode()


def open_envelope(raw: bytes | str) -> tuple[str, str, Any]:
    """(message id, task name, decoded body) of a queued message; InvalidMessage if it is
    not one."""
    try:
        envelope = json.loads(raw)
        headers = envelope["headers"]
        body = base64.b64decode(envelope["body"])
        return str(headers["id"]), str(headers["task"]), json.loads(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidMessage(f"not a task message: {exc.__class__.__name__}") from None


def message_id_of(raw: bytes | str) -> str | None:
    """The message id of a queued or unacked message, or None when it has none."""
    try:
        envelope = json.loads(raw)
        if isinstance(envelope, list):  # kombu's unacked hash: [message, exchange, key]
            envelope = envelope[0]
        return str(envelope["headers"]["id"])
    except (ValueError, KeyError, TypeError, IndexError):
        return None
