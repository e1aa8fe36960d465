"""The sink contract: open, write one batch (atomically, with the offsets it covers), close."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from app.records import Outcome


class Sink(Protocol):
    async def open(self) -> None: ...

    async def topic_code(self, topic: str) -> int:
        """A small number naming the topic in event ids, stable for the life of the database."""
        ...

    async def committed_offsets(self, topic: str) -> dict[int, int]:
        """Next offset per partition whose effect is not stored yet (0 when nothing is)."""
        ...

    async def write(self, topic: str, outcomes: Sequence[Outcome], next_offsets: Mapping[int, int]) -> None:
        """Make the batch true, and record `next_offsets`, all or nothing."""
        ...

    async def close(self) -> None: ...
