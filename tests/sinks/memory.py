"""A Sink holding its tables in memory, applying a batch's rows exactly as `alert_history_store_batch()`
(migrations/006) does: for in-process tests of the decider and the writer, thousands of streams a second.

Checked against PostgreSQL's own function by tests/sinks/test_memory_sink.py, so what the in-process tests
prove of the decider holds for the real store too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from app.records import EPOCH, MICROSECOND, MILLISECOND, Outcome
from sinks.base import StaleBatch
from sinks.postgres import BatchRows


def _ms(value: object) -> datetime | None:
    return None if value is None else EPOCH + int(value) * MILLISECOND  # type: ignore[call-overload]


def _us(value: object) -> datetime | None:
    return None if value is None else EPOCH + int(value) * MICROSECOND  # type: ignore[call-overload]


@dataclass
class EventRow:
    id: int
    fingerprint: str
    status: str
    starts_at: datetime
    ends_at: datetime | None
    received_at: datetime
    last_seen_at: datetime
    duplicates: int
    flapping: bool
    decision: str


@dataclass
class AlertRow:
    fingerprint: str
    status: str
    starts_at: datetime
    since: datetime
    last_seen_at: datetime
    episodes: int
    flapping: bool


class MemorySink:
    def __init__(self) -> None:
        self.events: dict[int, EventRow] = {}
        self.alerts: dict[str, AlertRow] = {}
        self.offsets: dict[str, dict[int, int]] = {}
        self.refused: dict[str, dict[tuple[int, int], str]] = {}
        self.writes = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def topic_code(self, topic: str) -> int:
        return 1

    async def committed_offsets(self, topic: str) -> dict[int, int]:
        return dict(self.offsets.get(topic, {}))

    async def refuse(self, topic: str, messages: Mapping[tuple[int, int], str]) -> None:
        self.refused.setdefault(topic, {}).update(messages)

    async def refused_messages(self, topic: str) -> dict[tuple[int, int], str]:
        return dict(self.refused.get(topic, {}))

    async def rejected(
        self, topic: str, outcomes: Sequence[Outcome], next_offsets: Mapping[int, int]
    ) -> list[tuple[Outcome, str]]:
        return []  # memory refuses nothing

    async def write(self, topic: str, outcomes: Sequence[Outcome], next_offsets: Mapping[int, int]) -> None:
        stored = self.offsets.setdefault(topic, {})
        first: dict[int, int] = {}
        for o in outcomes:
            first.setdefault(o.position.partition, o.position.offset)
        for partition, offset in first.items():
            if stored.get(partition, 0) > offset:
                raise StaleBatch(f"{topic}[{partition}] already stored up to {stored[partition]}, batch at {offset}")
        self.apply(BatchRows.build(outcomes))
        for partition, offset in next_offsets.items():
            stored[partition] = max(offset, stored.get(partition, 0))
        self.writes += 1

    def apply(self, rows: BatchRows) -> None:
        """The store function's four statements, in its order (each reads the tables as they were before it)."""
        for r in rows.inserts.values():
            if r[0] not in self.events:  # ON CONFLICT DO NOTHING
                self.events[r[0]] = EventRow(
                    id=r[0], fingerprint=r[1], status=r[2], starts_at=_us(r[5]), ends_at=_us(r[6]),  # type: ignore[arg-type]
                    received_at=_ms(r[8]), last_seen_at=_ms(r[10]), duplicates=r[11], flapping=r[12],  # type: ignore[arg-type]
                    decision=r[9],  # type: ignore[arg-type]
                )  # fmt: skip
        for event_id, (duplicates, seen_ms, received_ms) in rows.counters.items():
            row = self.events.get(event_id)
            if row is not None and row.received_at == _ms(received_ms):
                row.duplicates, row.last_seen_at = duplicates, _ms(seen_ms)  # type: ignore[assignment]
        before = {fp: a.starts_at for fp, a in self.alerts.items()}
        for a in rows.alerts.values():
            fp, resumes = a[0], _ms(a[14])
            episodes = int(a[12]) - (resumes is not None and before.get(fp) == resumes)  # type: ignore[call-overload]
            old = self.alerts.get(fp)
            self.alerts[fp] = AlertRow(
                fingerprint=fp, status=a[3], starts_at=_ms(a[4]), since=_ms(a[7]), last_seen_at=_ms(a[8]),  # type: ignore[arg-type]
                episodes=(old.episodes if old else 0) + episodes, flapping=a[10],  # type: ignore[arg-type]
            )  # fmt: skip
        for fp, seen_ms in rows.touches.items():
            if fp in self.alerts:
                self.alerts[fp].last_seen_at = _ms(seen_ms)  # type: ignore[assignment]

    def event_tuples(self) -> list[tuple[object, ...]]:
        """Rows as tests/model.py's EVENT_COLUMNS."""
        return [
            (r.fingerprint, r.status, r.starts_at, r.ends_at, r.received_at, r.last_seen_at, r.duplicates,
             r.flapping, r.decision)
            for r in self.events.values()
        ]  # fmt: skip

    def alert_tuples(self) -> list[tuple[object, ...]]:
        """Rows as tests/model.py's ALERT_COLUMNS."""
        return [
            (a.fingerprint, a.status, a.starts_at, a.since, a.last_seen_at, a.episodes, a.flapping)
            for a in self.alerts.values()
        ]
