"""The type hints hold: mypy, as pyproject.toml's [tool.mypy] sets it (strict, on worker/,
webhooks/, tasks/ and stripe_worker_agent/), reports no error."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a first run reads 65 modules and the libraries' stubs: 20-40 s here
@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy (in the test extra) is not installed"
)
def test_mypy_reports_no_error():
    run = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found" in run.stdout
