"""The type hints hold: mypy, as pyproject.toml's [tool.mypy] sets it (strict, on worker/,
webhooks/, tasks/ and stripe_worker_agent/), reports no error."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# A first run (as on CI's fresh clone) reads every module and the libraries' types, the
# Stripe SDK's most: 6.5 s alone on a quiet 2-core machine, 9 s in the suite, 15 s to 80 s
# on 2 loaded cores; a run on its cache (.mypy_cache/) about 4 s. Started among the first.
@pytest.mark.slow(seconds=9)
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
