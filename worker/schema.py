"""The published JSON Schemas of the stream entries (worker/schemas/<stream>.json).

Every entry carries `schema_version`. Adding a field keeps the version (agents ignore
fields they do not know, so the schemas allow them); removing or renaming a field, or
changing what one means, makes a new version.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from worker.errors import UsageError
from worker.keys import STREAMS

SCHEMA_VERSION = "1"


def schema_text(stream: str) -> str:
    """The schema of `stream`'s entries as shipped (customers, events or errors)."""
    if stream not in STREAMS:
        raise UsageError(f"no schema for {stream!r}: one of {', '.join(STREAMS)}")
    return files("worker").joinpath("schemas", f"{stream}.json").read_text("utf-8")


def schema_of(stream: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_text(stream))
    return schema
