"""Every benchmark script imports (its helpers come from tests/support and each other) and
has a main(); the fault and fuzz runs also run, small, in their own tests."""

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A script runs as __main__; a module such as peer_app (the plain way's app and task, which
# side_by_side starts) is only imported.
SCRIPTS = sorted(
    p.stem for p in (ROOT / "bench").glob("*.py") if "__main__" in p.read_text(encoding="utf-8")
)
MODULES = sorted(
    p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in SCRIPTS and p.stem != "__init__"
)


@pytest.mark.parametrize("name", SCRIPTS)
def test_bench_script_imports_and_has_a_main(name):
    module = importlib.import_module(f"bench.{name}")
    assert callable(module.main)


@pytest.mark.parametrize("name", MODULES)
def test_bench_module_imports(name):
    importlib.import_module(f"bench.{name}")
