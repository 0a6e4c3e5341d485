"""The order the run starts its tests in: longest first, dealt out as cards.

pytest-xdist's worksteal scheduler hands each worker a run of the collection in order, and
an idle worker steals from the tail of another's run, never its head. In file order the
minute-long catch-up test started 30-40 s into its worker's run and ended the suite alone;
sorted longest-first, one worker held every long test at the head of its run. Dealt
round-robin, each worker's run starts with one of the longest, and what is stolen is short.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

Test = TypeVar("Test")


def dealt(tests: Sequence[Test], workers: int, seconds: Callable[[Test], float]) -> list[Test]:
    """`tests` longest first (by `seconds`, ties in their order), dealt to `workers` hands
    laid end to end. Every worker computes the same order, as xdist requires."""
    longest = sorted(tests, key=seconds, reverse=True)
    return [test for hand in range(workers) for test in longest[hand::workers]]
