"""`stripe-worker tail`: a stream's entries on a terminal, one line each, or JSON.

Like `tail -f`: the last few entries, then each new one as it arrives. With a consumer
group it reads as one of the group's consumers, and acknowledges only when asked to.
"""

from __future__ import annotations

import datetime
import json
import time

import redis

from worker.streams import StreamConsumer, decode_entries, decode_read
from worker.terminal import printable


def entry_line(entry_id: str, fields: dict[str, str]) -> str:
    at = datetime.datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000)
    cols = [fields.get(k) or "-" for k in ("component", "customerId", "customerEmail")]
    line = f"{at:%H:%M:%S}  {cols[0]:26} {cols[1]:20} {cols[2]:30} "
    line += f"{fields.get('source', '')}:{fields.get('source_id', '')}"
    if fields.get("event_type"):
        line += f"  {fields['event_type']}"
    if fields.get("error_type"):
        status = fields.get("http_status") or "-"
        line += f"  {fields['error_type']} {status}: {fields.get('error_message', '')}"
    if fields.get("already_exists") == "true":
        line += f"  already exists; this signup's email: {fields.get('requested_email') or '-'}"
    return printable(line)


def _backlog(
    client: redis.Redis, key: str, start: str | int
) -> tuple[list[tuple[str, dict[str, str]]], str]:
    """The entries to show before following, and the id to follow from."""
    if start == "start":
        items = decode_entries(client.xrange(key))
    elif start == "new" or not start:
        items = []
    else:
        items = decode_entries(client.xrevrange(key, count=int(start)))[::-1]
    newest = items[-1:] or decode_entries(client.xrevrange(key, count=1))
    last = newest[0][0] if newest else "0-0"  # a fixed id: nothing slips between reads
    return items, last


def follow(
    client: redis.Redis,
    key: str,
    *,
    start: str | int = 10,
    group: str | None = None,
    consumer: str = "tail",
    ack: bool = False,
    count: int | None = None,
    as_json: bool = False,
    quiet_limit: float | None = None,
) -> int:
    """Print entries of `key`: `start` is how many of the last to show first, or "start"
    (all) or "new" (none); then follow, until `count` entries were shown or none came for
    `quiet_limit` seconds. Returns how many were shown."""
    reader = None
    items: list[tuple[str, dict[str, str]]] = []
    if group:
        first = "$" if start == "new" else "0"  # a new group begins where an agent's would
        reader = StreamConsumer(client, key, group, consumer, start=first)
    else:
        items, last = _backlog(client, key, start)
    shown = 0
    quiet_since = time.monotonic()
    while count is None or shown < count:
        if reader is not None:
            # never take more from the group than this will show
            items = reader.read(
                count=10 if count is None else min(10, count - shown), block_ms=1000
            )
        elif not items:
            answer = client.xread({key: last}, count=10, block=1000) or []
            items = decode_read(answer)
        for entry_id, fields in items:
            last = entry_id
            as_text = json.dumps({"id": entry_id, **fields}) if as_json else None
            print(as_text or entry_line(entry_id, fields), flush=True)
            if reader is not None and ack:
                reader.ack([entry_id])
            shown += 1
            quiet_since = time.monotonic()
            if count is not None and shown >= count:
                return shown
        if not items and quiet_limit is not None and time.monotonic() - quiet_since >= quiet_limit:
            return shown
        items = []
    return shown
