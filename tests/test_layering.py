"""The layout's promises. Three floors, on a ground floor:

- the agent's helper, `stripe_worker_agent/`: the stream consumer and the Redis client an
  agent uses, installed under a name of its own; it imports none of the project's packages,
  so an agent's own `worker.py` or `tasks.py` cannot break it;
- the base, `worker/`: settings, keys, errors, the typed work, the queue and the streams, what
  both processes share; it imports neither `tasks/` nor `webhooks/`, nor Celery;
- the two processes on it, `webhooks/` (the receiver) and `tasks/` (the worker: its Celery app,
  transport, recovery, tasks), which never import each other;
- the wiring on top, the CLI (`worker/__main__.py`, `cli.py` and the command modules it
  dispatches to) and the developer tools (`worker/devtools/`): the one place that imports both
  processes.

The receiver needs no Celery, tasks or Stripe SDK, and the hot path never imports the developer
tools."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ("tasks", "webhooks")
AGENT = "stripe_worker_agent"
# The wiring floor: the CLI and the dev tools. Only these modules of worker/ may import tasks/
# or webhooks/ (and so start either process).
WIRING = (
    "worker.__main__",
    "worker.cli",
    "worker.commands",
    "worker.serve_commands",
    "worker.cli_process",
    "worker.ops_commands",
)
WIRING_PACKAGES = ("worker.devtools",)
# The worker process's own libraries: the base and the receiver stay clear of them.
WORKER_PROCESS_LIBRARIES = ("celery", "kombu")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Every absolute module name `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


MODULES = {
    _module_name(path): path
    for package in (AGENT, "worker", *PROCESSES)
    for path in sorted((ROOT / package).rglob("*.py"))
}
IMPORTS = {name: _imported(path) for name, path in MODULES.items()}


def _in(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _is_wiring(name: str) -> bool:
    return name in WIRING or _in(name, *WIRING_PACKAGES)


BASE = sorted(n for n in MODULES if _in(n, "worker") and not _is_wiring(n) and n != "worker")


def test_the_floors_are_named_after_modules_that_exist():
    assert set(WIRING) <= set(MODULES)
    assert set(WIRING_PACKAGES) <= set(MODULES)


@pytest.mark.parametrize("module", BASE)
def test_the_base_imports_neither_process_nor_the_worker_libraries(module):
    wrong = {n for n in IMPORTS[module] if _in(n, *PROCESSES, *WORKER_PROCESS_LIBRARIES)}
    assert not wrong, f"{module} (the base floor) imports {sorted(wrong)}"


@pytest.mark.parametrize(("process", "other"), [("tasks", "webhooks"), ("webhooks", "tasks")])
def test_the_processes_never_import_each_other(process, other):
    wrong = {
        (name, imported)
        for name in MODULES
        if _in(name, process)
        for imported in IMPORTS[name]
        if _in(imported, other) or (_in(imported, "worker") and _is_wiring(imported))
    }
    assert not wrong


@pytest.mark.parametrize("module", sorted(n for n in MODULES if _in(n, AGENT)))
def test_the_agents_helper_imports_none_of_the_project(module):
    wrong = {n for n in IMPORTS[module] if _in(n, "worker", *PROCESSES)}
    assert not wrong, f"{module} imports {sorted(wrong)}: an agent's own module could shadow it"


def test_only_the_wiring_imports_both_processes():
    both = {
        name for name in MODULES if all(any(_in(i, p) for i in IMPORTS[name]) for p in PROCESSES)
    }
    assert both and all(_is_wiring(name) for name in both)


def test_what_only_the_worker_process_uses_lives_in_tasks():
    """A base module is there because the receiver or the CLI uses it too: one that only
    tasks/ reaches belongs in tasks/."""
    starts = [n for n in MODULES if _in(n, "webhooks") or _is_wiring(n)]
    seen: set[str] = set()
    while starts:
        name = starts.pop()
        if name in seen or _in(name, "tasks"):
            continue
        seen.add(name)
        starts += [i for i in IMPORTS[name] if i in MODULES]
    assert not [n for n in BASE if n not in seen]


def modules_after_import(*names: str) -> set[str]:
    code = f"import sys\nimport {', '.join(names)}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("forbidden", ["tasks", "stripe", "celery", "kombu", "worker.devtools"])
@pytest.mark.slow
def test_the_receiver_builds_messages_without(forbidden):
    loaded = modules_after_import("webhooks.app")
    assert not {m for m in loaded if m == forbidden or m.startswith(forbidden + ".")}


@pytest.mark.slow
def test_the_worker_never_imports_the_developer_tools_or_the_receiver():
    loaded = modules_after_import("tasks.launch", "tasks.customers", "tasks.recovery")
    assert not {m for m in loaded if m.startswith(("worker.devtools", "webhooks"))}


# Module-level names that are mutable state: a worker is steered by its WorkerState
# (tasks/worker_state.py), made at start and passed in, never by module globals.
_MUTABLE_CALLS = {"dict", "set", "list", "WeakSet", "Event", "WeakValueDictionary", "deque"}


def _module_state(path: Path) -> list[str]:
    found = []
    for node in ast.parse(path.read_text("utf-8")).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        mutable = isinstance(value, (ast.Dict, ast.Set, ast.List)) and not _constant(node)
        if isinstance(value, ast.Call):
            func = value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            mutable = name in _MUTABLE_CALLS
        if mutable:
            found += [ast.unparse(t) for t in targets]
    return found


def _constant(node: ast.Assign | ast.AnnAssign) -> bool:
    """UPPER_CASE names are tables the module reads, never writes."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)


@pytest.mark.parametrize("process", PROCESSES)
def test_no_module_global_steers_a_process(process):
    state = {
        str(path.relative_to(ROOT)): names
        for path in sorted((ROOT / process).rglob("*.py"))
        if (names := _module_state(path))
    }
    assert state == {}
