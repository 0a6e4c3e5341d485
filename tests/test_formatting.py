"""The tree stays formatted and lint-clean: `ruff format --check .` and `ruff check .`."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ruff() -> str | None:
    """The ruff beside the interpreter running the tests (the venv's), else on PATH."""
    return shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.parametrize("command", [["format", "--check", "."], ["check", "."]])
def test_ruff_is_clean(command):
    exe = ruff()
    if exe is None:
        pytest.skip("ruff is not installed: pip install -e '.[test]' brings it")
    done = subprocess.run([exe, *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ruff {' '.join(command)}:\n{done.stdout}{done.stderr}"
