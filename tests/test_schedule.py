"""The run's order: each worker's run of tests starts with one of the longest."""

from .support.schedule import dealt

SECONDS = {"minute": 60, "a": 20, "b": 17, "c": 13, "slow1": 3, "slow2": 3}


def seconds(test: str) -> float:
    return SECONDS.get(test, 0)


def test_each_hand_starts_with_one_of_the_longest():
    tests = ["fast1", "slow1", "c", "fast2", "minute", "b", "slow2", "a", "fast3"]
    order = dealt(tests, 3, seconds)
    assert sorted(order) == sorted(tests)
    # three hands of three, as worksteal hands them out: the three longest lead them
    assert [order[0], order[3], order[6]] == ["minute", "a", "b"]
    assert order[:3] == ["minute", "c", "fast1"]  # then the 4th longest, then by order


def test_ties_keep_the_collections_order_and_one_worker_is_longest_first():
    tests = ["fast1", "slow2", "fast2", "slow1", "minute"]
    assert dealt(tests, 1, seconds) == ["minute", "slow2", "slow1", "fast1", "fast2"]
    assert dealt([], 6, seconds) == []
