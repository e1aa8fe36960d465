"""The sink contract: open, write one batch (atomically, with the offsets it covers), close; and the errors
every sink raises, so the pipeline handles them without knowing which sink it writes to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from app.errors import AlertHistoryError
from app.records import Outcome

T = TypeVar("T")


class StaleBatch(AlertHistoryError):
    """Another worker already stored offsets this batch covers (a rebalance zombie): drop the batch."""


class RowsRejected(AlertHistoryError):
    """The store refused the batch for its data, not for its availability: retrying the same rows cannot
    succeed. `Sink.rejected` finds the events at fault; the pipeline dead-letters them and stores the rest."""


class Sink(Protocol):
    async def open(self) -> None: ...

    async def topic_code(self, topic: str) -> int:
        """A small number naming the topic in event ids, stable for the life of the database."""
        ...

    async def committed_offsets(self, topic: str) -> dict[int, int]:
        """Next offset per partition whose effect is not stored yet (0 when nothing is)."""
        ...

    async def write(self, topic: str, outcomes: Sequence[Outcome], next_offsets: Mapping[int, int]) -> None:
        """Make the batch true, and record `next_offsets`, all or nothing. Raises StaleBatch, RowsRejected."""
        ...

    async def rejected(
        self, topic: str, outcomes: Sequence[Outcome], next_offsets: Mapping[int, int]
    ) -> list[tuple[Outcome, str]]:
        """After RowsRejected: the outcomes the store refuses on their own, each with the store's reason.
        Stores nothing."""
        ...

    async def refuse(self, topic: str, messages: Mapping[tuple[int, int], str]) -> None:
        """Remember these messages, (partition, offset) → reason, as refused: never to be applied."""
        ...

    async def refused_messages(self, topic: str) -> dict[tuple[int, int], str]:
        """Every message of the topic remembered as refused."""
        ...

    async def close(self) -> None: ...


async def bisect(items: Sequence[T], refuses: Callable[[Sequence[T]], Awaitable[str | None]]) -> list[tuple[T, str]]:
    """The items that `refuses` refuses alone, each with its reason, in about 2·k·log2(n) trials for k of them.

    Empty when every half passes though the whole did not (the fault is in how rows combine, not in one)."""
    reason = await refuses(items)
    if reason is None:
        return []
    if len(items) == 1:
        return [(items[0], reason)]
    half = len(items) // 2
    return [*await bisect(items[:half], refuses), *await bisect(items[half:], refuses)]
