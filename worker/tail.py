"""`stripe-worker tail`: a stream's entries on a terminal, one line each, or JSON."""

from __future__ import annotations

import datetime
import json

import redis

from worker.streams import StreamConsumer, decode_entry


def entry_line(entry_id: str, fields: dict[str, str]) -> str:
    at = datetime.datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000)
    what = fields.get("event_type") or fields.get("error_type") or ""
    cols = [fields.get(k) or "-" for k in ("component", "customerId", "customerEmail")]
    return (
        f"{at:%H:%M:%S}  {cols[0]:26} {cols[1]:20} {cols[2]:30} "
        f"{fields.get('source', '')}:{fields.get('source_id', '')} {what}"
    )


def follow(
    client: redis.Redis,
    key: str,
    *,
    group: str | None,
    consumer: str | None,
    from_start: bool,
    count: int | None,
    as_json: bool,
) -> None:
    """Print entries of `key` as they arrive, `count` at most."""
    reader = None
    if group:
        reader = StreamConsumer(
            client, key, group, consumer or "tail", start="0" if from_start else "$"
        )
    last = "0" if from_start else "$"
    shown = 0
    while count is None or shown < count:
        if reader is not None:
            items = reader.read(count=10, block_ms=1000)
        else:
            answer = client.xread({key: last}, count=10, block=1000) or []
            items = [(i.decode(), decode_entry(f)) for _s, batch in answer for i, f in batch]
        for entry_id, fields in items:
            last = entry_id
            line = (
                json.dumps({"id": entry_id, **fields}) if as_json else entry_line(entry_id, fields)
            )
            print(line, flush=True)
            if reader is not None:
                reader.ack([entry_id])
            shown += 1
            if count is not None and shown >= count:
                break
