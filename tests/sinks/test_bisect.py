"""sinks.base.bisect: the items refused alone are found, each with its reason; nothing else is blamed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sinks.base import bisect


def refusing(bad: set[int], together: frozenset[int] = frozenset()):  # type: ignore[no-untyped-def]
    trials: list[Sequence[int]] = []

    async def refuses(items: Sequence[int]) -> str | None:
        trials.append(items)
        hit = sorted(set(items) & bad)
        if hit:
            return f"item {hit[0]} refused"
        if together and together <= set(items):
            return "these two together"
        return None

    return refuses, trials


@pytest.mark.parametrize(
    ("n", "bad", "want"),
    [
        (1, set(), []),
        (1, {0}, [0]),
        (100, set(), []),
        (100, {0}, [0]),
        (100, {99}, [99]),
        (100, {3, 4, 77}, [3, 4, 77]),
        (7, set(range(7)), list(range(7))),
    ],
)
async def test_finds_exactly_the_items_refused_alone(n: int, bad: set[int], want: list[int]) -> None:
    refuses, trials = refusing(bad)
    found = await bisect(list(range(n)), refuses)
    assert [item for item, _ in found] == want
    assert all(reason == f"item {item} refused" for item, reason in found)
    if len(bad) == 1 and n == 100:
        assert len(trials) <= 2 * 7 + 1  # about 2·log2(n) trials for one bad item, not n


async def test_a_fault_of_the_combination_blames_no_item() -> None:
    refuses, _ = refusing(set(), together=frozenset({10, 60}))
    assert await bisect(list(range(100)), refuses) == []
