"""Waiting on a condition instead of sleeping, and starting calls at the same moment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll until `predicate()` is truthy; its last value, or AssertionError on time out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def http_answers(url: str, any_answer: bool = False) -> bool:
    """True when GET `url` answers 2xx (or anything at all, with `any_answer`)."""
    import requests

    try:
        return requests.get(url, timeout=1).ok or any_answer
    except requests.RequestException:
        return False


def wait_http(url: str, timeout: float = 30.0, any_answer: bool = False) -> None:
    """Wait until `url` answers 2xx (or anything, with `any_answer`); AssertionError on time
    out."""
    wait_for(lambda: http_answers(url, any_answer), timeout=timeout, interval=0.1)


def at_once(n: int, call: Callable[[], Any]) -> list[Any]:
    """Run `call()` in `n` threads released together; their results, as they finish."""
    results: list[Any] = []
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        results.append(call())

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
