"""Every benchmark script imports as `bench.<script>` (its helpers come from bench/harness.py
and tests/support) and has a main(), and its command line as the README gives it
(`python bench/<script>.py`) answers --help; the fault and fuzz runs also run, small, in
their own tests."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A script runs as __main__; a module such as peer_app (the plain way's app and task, which
# side_by_side starts) is only imported.
SCRIPTS = sorted(
    p.stem for p in (ROOT / "bench").glob("*.py") if "__main__" in p.read_text(encoding="utf-8")
)
MODULES = sorted(
    p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in SCRIPTS and p.stem != "__init__"
)


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.slow
def test_bench_script_imports_and_has_a_main(name):
    module = importlib.import_module(f"bench.{name}")
    assert callable(module.main)


@pytest.mark.parametrize("name", MODULES)
def test_bench_module_imports(name):
    importlib.import_module(f"bench.{name}")


# Each script as `python bench/<script>.py --help` runs it (runpy.run_path: `__package__`
# empty, sys.path[0] the script's folder, argv[0] its path), all in one interpreter started
# outside the project folder: the libraries are imported once, not once a script, while
# the project's `bench` and `tests` packages are forgotten before each script, so each
# finds them by its own path set-up.
_AS_FILES = """
import contextlib, io, json, runpy, sys
results, first = {}, sys.path[0]
for path in sys.argv[1:]:
    for name in [m for m in sys.modules if m.split(".")[0] in ("bench", "tests")]:
        del sys.modules[name]
    sys.path[0], sys.argv = path.rsplit("/", 1)[0], [path, "--help"]
    out, err, code = io.StringIO(), io.StringIO(), None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:
        code, err = repr(exc), io.StringIO(err.getvalue() + repr(exc))
    results[path] = [code, out.getvalue(), err.getvalue()]
    sys.path[0] = first
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def run_as_files():
    paths = [str(ROOT / "bench" / f"{name}.py") for name in SCRIPTS]
    done = subprocess.run(
        [sys.executable, "-c", _AS_FILES, *paths],
        cwd="/",  # not the project folder: each script finds it itself
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return {Path(path).stem: answer for path, answer in json.loads(done.stdout).items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_bench_script_runs_as_a_file(run_as_files, name):
    code, out, err = run_as_files[name]
    assert code in (0, None) and out.startswith("usage:"), err


def test_a_stack_forgets_the_kombu_bindings_its_peer_left_and_only_those(redis_client, prefix):
    from bench.harness import forget_kombu_bindings

    own, shared = f"_kombu.binding.{prefix}:q", f"_kombu.binding.{prefix}-shared"
    deadlines = f"_kombu.binding_deadlines.{prefix}-test"
    redis_client.sadd(own, f"{prefix}:q\x06\x16\x06\x16{prefix}:q")
    redis_client.sadd(shared, f"\x06\x16\x06\x16{prefix}@host.celery.pidbox", "someone@else")
    redis_client.zadd(deadlines, {f"{prefix}:q": 1, "someone:q": 2})
    try:
        forget_kombu_bindings(redis_client, prefix)
        assert not redis_client.exists(own)
        assert redis_client.smembers(shared) == {"someone@else"}
        assert redis_client.zrange(deadlines, 0, -1) == ["someone:q"]
    finally:
        redis_client.delete(own, shared, deadlines)
