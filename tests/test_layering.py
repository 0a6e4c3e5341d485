"""The layout's promises: the receiver needs no Celery, tasks or Stripe SDK, and the hot path
never imports the developer tools."""

import subprocess
import sys

import pytest


def modules_after_import(*names: str) -> set[str]:
    code = f"import sys\nimport {', '.join(names)}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("forbidden", ["tasks", "stripe", "celery", "kombu", "worker.devtools"])
def test_the_receiver_builds_messages_without(forbidden):
    loaded = modules_after_import("webhooks.app")
    assert not {m for m in loaded if m == forbidden or m.startswith(forbidden + ".")}


def test_the_worker_never_imports_the_developer_tools_or_the_receiver():
    loaded = modules_after_import("tasks.launch", "tasks.customers", "worker.recovery")
    assert not {m for m in loaded if m.startswith(("worker.devtools", "webhooks"))}
