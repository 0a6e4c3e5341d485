"""PROMETHEUS_MULTIPROC_DIR for a process whose metrics are counted in its children.

prometheus-client reads the variable when it is first imported, so it is set before
anything imports it; the folder is removed when the process that made it leaves, so no
start leaves one behind in TMPDIR. One set by the operator is used as it is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_folder(wanted: bool = True) -> Iterator[None]:
    made, owner = None, os.getpid()
    if wanted and not os.environ.get(VARIABLE):
        made = tempfile.mkdtemp(prefix="stripe-worker-prom-")
        os.environ[VARIABLE] = made
    try:
        yield
    finally:
        if made and os.getpid() == owner:  # not in a forked child (gunicorn, prefork) leaving
            shutil.rmtree(made, ignore_errors=True)
            os.environ.pop(VARIABLE, None)
