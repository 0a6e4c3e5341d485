"""What the benchmark scripts share."""

from __future__ import annotations

import time

import requests


def wait_http(url: str, timeout: float = 30, any_answer: bool = False) -> None:
    """Wait until `url` answers 2xx (or anything, with `any_answer`); RuntimeError on time out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok or any_answer:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f}s")
