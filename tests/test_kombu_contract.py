"""The private parts of kombu, Celery and redis-py we rely on (tasks/kombu_contract.py),
checked against the installed versions: each name is there, each callable has the
signature written down, and no private name is used outside the list. Run this first
when moving the kombu or Celery pin (README, "Libraries, and why")."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.transport.virtual import Message

from tasks.celery_app import create_celery
from tasks.kombu_contract import KOMBU_CONTRACT, Hook, resolve, signature_of

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("kombu", "celery", "redis")
# The modules that reach into kombu, Celery or redis-py: every one importing kombu or Celery,
# and stripe_worker_agent/connection.py, which subclasses redis-py's Sentinel connection.
USERS = sorted(
    {
        str(path.relative_to(ROOT))
        for package in ("worker", "tasks", "webhooks", "stripe_worker_agent")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^\s*(from|import) (kombu|celery)\b", path.read_text("utf-8"), re.M)
    }
    | {"stripe_worker_agent/connection.py"}
)
SENTINEL = object()


@pytest.fixture
def instances(settings) -> Iterator[list[Any]]:
    """Real objects of the classes whose instance attributes the contract names: the
    worker's broker connection and its own transport channel (as Celery makes them), its
    QoS, a message, a redis-py connection."""
    app = create_celery(settings)
    connection = app.connection_for_read()
    channel = connection.default_channel
    message = Message({"body": "", "properties": {"delivery_tag": "t"}}, channel=channel)
    client = redis.Redis.from_url(settings.redis_url)
    made = [connection, channel, channel.qos, message, connection.transport, channel._queue_cycle]
    made.append(client.connection_pool.make_connection())
    yield made
    client.close()
    connection.release()


def ids(hook: Hook) -> str:
    return f"{hook.owner}.{hook.name}"


@pytest.mark.parametrize("hook", KOMBU_CONTRACT, ids=ids)
def test_each_name_is_there_as_written(hook: Hook, instances: list[Any]) -> None:
    owner = resolve(hook.owner)
    if hook.kind == "instance":
        found = [made for made in instances if isinstance(made, owner)]
        assert found, f"the test makes no {hook.owner} to look on"
        value = getattr(found[0], hook.name)
    elif hook.kind == "assigned":
        assert f"self.{hook.name} =" in inspect.getsource(owner.__init__), hook
        return
    else:
        assert hasattr(owner, hook.name), f"{ids(hook)} is gone; used in {hook.used_in}"
        value = getattr(owner, hook.name)
    if hook.kind == "callable":
        assert callable(value)
        assert signature_of(value) == hook.signature, (ids(hook), hook.used_in)
    if hook.holds is not None:
        assert hook.holds(value), (ids(hook), value)


def _own_private_names() -> set[str]:
    """Private names this project defines itself: functions, methods, module globals, and
    attributes its classes' __init__ assign."""
    names: set[str] = set()
    for package in ("worker", "tasks", "webhooks", "stripe_worker_agent"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.ClassDef):
                    names.add(node.name)
                    if node.name == "__init__":
                        names |= {
                            target.attr
                            for child in ast.walk(node)
                            if isinstance(child, ast.Assign | ast.AnnAssign)
                            for target in (
                                child.targets if isinstance(child, ast.Assign) else [child.target]
                            )
                            if isinstance(target, ast.Attribute)
                        }
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


def test_no_private_name_of_theirs_is_used_outside_the_list() -> None:
    listed = {hook.name for hook in KOMBU_CONTRACT}
    own = _own_private_names()
    unlisted = set()
    for module in USERS:
        for node in ast.walk(ast.parse((ROOT / module).read_text("utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else None
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value  # getattr(message, "_raw")
            if not name or not name.startswith("_") or name.startswith("__"):
                continue
            if name.isidentifier() and name not in listed and name not in own:
                unlisted.add(f"{module}: {name}")
    assert not unlisted, "add these to tasks/kombu_contract.py: " + ", ".join(sorted(unlisted))


def test_every_override_of_theirs_is_listed() -> None:
    """A method of ours that replaces one of a kombu, Celery or redis-py base class (a
    private hook above all) is part of the contract too."""
    listed = {hook.name for hook in KOMBU_CONTRACT}
    unlisted = []
    for path in USERS:
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and cls.__module__ == module.__name__):
                continue
            theirs = [b for b in cls.__mro__ if b.__module__.split(".")[0] in LIBRARIES]
            for name, value in vars(cls).items():
                if not (inspect.isfunction(value) or isinstance(value, classmethod | staticmethod)):
                    # A class attribute (Channel.QoS) is kombu's documented plug; what
                    # Celery's Task.bind sets on a task class (request_stack) is its own.
                    continue
                if name.startswith("__") and name != "__init__":
                    continue
                if any(name in vars(base) for base in theirs) and name not in listed:
                    unlisted.append(f"{cls.__qualname__}.{name}")
    assert not unlisted, "add these to tasks/kombu_contract.py: " + ", ".join(unlisted)


def test_kombu_prefixes_lpush_and_not_lrem(settings, redis_client) -> None:
    """What Channel._quarantine and QoS.append rely on, on a real Redis through kombu's own
    client."""
    app = create_celery(settings)
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        full = settings.keys.kombu_prefix + "contract-probe"
        assert channel.client.lpush("contract-probe", "m") == 1
        assert redis_client.llen(full) == 1
        # QoS.append's look for the next fetch: LLEN's key prefixed, LINDEX's not.
        pipe = channel.client.pipeline()
        pipe.llen("contract-probe")
        pipe.lindex(full, 0)
        assert pipe.execute() == [1, b"m"]
        assert channel.client.lrem(full, 1, "m") == 1
        assert not redis_client.exists(full)


def test_signature_of_shows_what_the_table_writes() -> None:
    def sample(a, b=1, *args, c=None, d=SENTINEL, **kw):
        return None

    def keyword_only(a, *, b=False):
        return None

    assert signature_of(sample) == "(a, b=1, *args, c=None, d=…, **kw)"
    assert signature_of(keyword_only) == "(a, *, b=False)"
