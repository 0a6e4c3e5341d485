"""Pytest plugin: every stream entry a test leaves behind is checked against the published
schema of its stream (worker/schemas/*.json), before the `settings` fixture deletes it.

It runs at each test's teardown for tests that use `settings` (every test that writes
under a test STREAM_PREFIX), reads the test's customers, events and errors streams, and
validates each entry more strictly than agents are asked to: no field the schema does not
name (`additionalProperties: false`), and JSON fields parsed and checked against their
`contentSchema`. A mismatch is a teardown error naming the entry.

Tests that publish hand-made fields to exercise the plumbing are left out: the module
tests/test_streams.py and tests marked `handmade_entries`.
"""

from __future__ import annotations

import collections
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from jsonschema import Draft202012Validator

from worker.keys import STREAMS
from worker.schema import schema_of

HANDMADE_MODULES = {"test_streams.py"}
checked: collections.Counter[str] = collections.Counter()


def _closed(schema: dict[str, Any]) -> tuple[Draft202012Validator, dict[str, dict]]:
    strict = copy.deepcopy(schema)
    strict["additionalProperties"] = False
    contents = {
        name: prop["contentSchema"]
        for name, prop in strict["properties"].items()
        if prop.get("contentMediaType") == "application/json"
    }
    return Draft202012Validator(strict), contents


_validators = {stream: _closed(schema_of(stream)) for stream in STREAMS}


def entry_problems(stream: str, fields: dict[str, str]) -> list[str]:
    """What is wrong with one entry of `stream`, [] when it matches its schema."""
    validator, contents = _validators[stream]
    problems = [e.message for e in validator.iter_errors(fields)]
    for name, content in contents.items():
        if fields.get(name, "") == "":
            continue
        try:
            value = json.loads(fields[name])
        except ValueError:
            problems.append(f"{name} is not JSON")
            continue
        inner = Draft202012Validator(content).iter_errors(value)
        problems += [f"{name}: {e.message}" for e in inner]
    return problems


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "handmade_entries: publishes hand-made fields; not checked against schemas"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    problems = _check(item)
    result = yield  # the fixtures' own teardown (the keys are deleted there)
    if problems:
        raise AssertionError("stream entries that break their schema:\n" + "\n".join(problems))
    return result


def _check(item: pytest.Item) -> list[str]:
    settings = getattr(item, "funcargs", {}).get("settings")
    if settings is None or item.path.name in HANDMADE_MODULES:
        return []
    if item.get_closest_marker("handmade_entries"):
        return []
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    problems = []
    try:
        for stream in STREAMS:
            for entry_id, fields in client.xrange(settings.keys.stream(stream)):
                checked[stream] += 1
                problems += [f"{stream} {entry_id}: {p}" for p in entry_problems(stream, fields)]
    except redis.RedisError:
        return []  # a test that stopped its Redis: nothing to read
    finally:
        client.close()
    return problems[:20]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if checked:
        counts = ", ".join(f"{stream} {n}" for stream, n in sorted(checked.items()))
        terminalreporter.write_line(f"stream entries checked against their schemas: {counts}")
