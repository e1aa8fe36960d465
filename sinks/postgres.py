"""PostgreSQL sink: one transaction per batch holding the rows and the Kafka offsets they cover."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import asyncpg
import orjson

from app.records import EPOCH, MICROSECOND, NEW_ROW, Decision, FingerprintState, Outcome
from app.retry import retry

log = logging.getLogger(__name__)

_RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "08000", "08003", "08006"}


def is_retryable(exc: BaseException) -> bool:
    """The one place that decides retryable vs fatal for PostgreSQL."""
    if isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.exceptions.ConnectionDoesNotExistError):
        return True
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        return "connection" in str(exc).lower()
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) in _RETRYABLE_SQLSTATES


DAY_MS = 86_400_000


def _day(ms: int) -> date:
    return (EPOCH + timedelta(days=ms // DAY_MS)).date()


def _us(t: datetime | None) -> int | None:
    """A sender's time as integer microseconds since the epoch: exact, where a float timestamp is not."""
    return None if t is None else (t - EPOCH) // MICROSECOND


@dataclass
class BatchRows:
    """A batch collapsed to one statement's worth of rows per table, in the layouts of migration 006."""

    # Times the pipeline keeps (message times) go as integer milliseconds, a sender's as microseconds.
    inserts: dict[int, list[object]] = field(default_factory=dict)
    counters: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # id → dups, seen ms, received ms
    alerts: dict[str, list[object]] = field(default_factory=dict)
    touches: dict[str, int] = field(default_factory=dict)  # fingerprint → last seen ms, for resends only

    @classmethod
    def build(cls, outcomes: Sequence[Outcome]) -> BatchRows:
        rows = cls()
        final: dict[str, FingerprintState] = {}  # each fingerprint's state after the batch
        content: dict[str, Outcome] = {}  # its last decoded event: what the alerts row holds
        episodes: dict[str, int] = {}
        resumes: dict[str, int | None] = {}
        for o in outcomes:
            if o.state is None or o.decision in (Decision.REPLAYED, Decision.LATE):
                continue
            st = o.state
            if o.decision in NEW_ROW:
                rows.inserts[st.event_id] = _event_row(o, st)
            elif st.event_id in rows.inserts:  # duplicate of a row created in this same batch
                rows.inserts[st.event_id][10:12] = [st.last_seen_ms, st.duplicates]
            else:
                rows.counters[st.event_id] = (st.duplicates, st.last_seen_ms, st.received_ms)
            fp = o.fingerprint
            opens = o.opens_episode is not False
            if fp in final:
                episodes[fp] += opens
            else:
                episodes[fp] = int(opens)
                # No state to compare with (the alert is new, or its state expired): counted as an episode
                # here, and the upsert takes it back if the alerts row already holds that startsAt.
                resumes[fp] = st.starts_at_ms if o.opens_episode is None else None
            final[fp] = st
            if o.event is not None:
                content[fp] = o
        for fp, st in final.items():
            o = content.get(fp)
            if o is None:  # only resends of what the row holds: it was last seen now, nothing else changed
                rows.touches[fp] = st.last_seen_ms
            else:  # resends after a decoded event in this batch repeat its bytes: its content, the final state
                rows.alerts[fp] = [*_alert_row(o, st, episodes=episodes[fp]), resumes[fp]]
        return rows

    def days(self) -> set[date]:
        """UTC days the new rows fall on: each needs its alert_events partition."""
        return {_day(row[8]) for row in self.inserts.values()}  # type: ignore[arg-type]


def _event_row(o: Outcome, st: FingerprintState) -> list[object]:
    e = o.event
    assert e is not None, "a new row is always a decoded event"
    return [
        st.event_id, e.fingerprint, e.status, e.labels, e.annotations, _us(e.starts_at),
        _us(e.ends_at), e.generator_url, st.received_ms, o.decision.value, st.last_seen_ms,
        st.duplicates, st.flapping, o.severity, o.classification, e.source, e.receiver,
    ]  # fmt: skip


def _alert_row(o: Outcome, st: FingerprintState, *, episodes: int) -> list[object]:
    e = o.event
    assert e is not None
    return [
        e.fingerprint, e.labels, e.annotations, st.status, st.starts_at_ms, _us(e.ends_at),
        e.generator_url, st.received_ms, st.last_seen_ms, st.event_id, st.flapping, o.severity,
        episodes, e.receiver,
    ]  # fmt: skip


# One statement, its own transaction: migrations/006_store_batch_as_json.sql holds the batch's SQL.
_STORE_BATCH = "SELECT alert_history_store_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)"


def store_batch_args(
    topic: str, rows: BatchRows, first: Mapping[int, int], next_offsets: Mapping[int, int]
) -> list[object]:
    """The function's parameters: offsets as arrays, each table's rows as one JSON array (orjson, in C)."""
    parts, firsts = sorted(next_offsets), sorted(first)
    return [
        topic, parts, [next_offsets[p] for p in parts], firsts, [first[p] for p in firsts],
        orjson.dumps(list(rows.inserts.values())).decode(),
        orjson.dumps([(i, *c) for i, c in rows.counters.items()]).decode(),
        orjson.dumps(list(rows.alerts.values())).decode(),
        orjson.dumps(list(rows.touches.items())).decode(),
    ]  # fmt: skip


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects; strings pass through so pre-serialised rows are not re-encoded.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            schema="pg_catalog",
            format="text",
            encoder=lambda v: v if isinstance(v, str) else orjson.dumps(v).decode(),
            decoder=orjson.loads,
        )


async def open_pool(url: str, size: int, *, command_timeout: float | None = None) -> asyncpg.Pool:
    """An asyncpg pool with our codecs, retried while PostgreSQL is still starting. `command_timeout`: seconds a
    statement may go unanswered before the client gives up (asyncio.TimeoutError); None waits as long as it takes."""
    return await retry(
        "connect to PostgreSQL",
        lambda: asyncpg.create_pool(
            url, min_size=1, max_size=size, init=_init_connection, command_timeout=command_timeout
        ),
        retryable=is_retryable,
    )


class StaleBatch(Exception):
    """Another worker already stored offsets this batch covers (a rebalance zombie): drop the batch."""


class PostgresSink:
    def __init__(self, database_url: str, *, pool_size: int = 4) -> None:
        self._url = database_url
        self._pool_size = pool_size
        self.pool: asyncpg.Pool | None = None
        self._partitions: set[date] = set()  # days whose alert_events partition is known to exist

    async def open(self) -> None:
        self.pool = await open_pool(self._url, self._pool_size)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def topic_code(self, topic: str) -> int:
        assert self.pool is not None
        await self.pool.execute("INSERT INTO topics (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", topic)
        return int(await self.pool.fetchval("SELECT code FROM topics WHERE name = $1", topic))

    async def committed_offsets(self, topic: str) -> dict[int, int]:
        assert self.pool is not None
        rows = await self.pool.fetch("SELECT partition, next_offset FROM sink_offsets WHERE topic = $1", topic)
        return {r["partition"]: r["next_offset"] for r in rows}

    async def ensure_partitions(self, days: set[date]) -> None:
        """Create the missing daily partitions, each in its own short transaction (never inside a batch)."""
        assert self.pool is not None
        for day in sorted(days - self._partitions):
            await self.pool.execute("SELECT alert_events_ensure_partition($1)", day)
            self._partitions.add(day)

    def forget_partitions(self) -> None:
        """Retention dropped some: look again before the next write."""
        self._partitions.clear()

    async def write(self, topic: str, outcomes: Sequence[Outcome], next_offsets: Mapping[int, int]) -> None:
        rows = BatchRows.build(outcomes)
        days = rows.days()
        first = {}
        for o in outcomes:
            first.setdefault(o.position.partition, o.position.offset)

        args = store_batch_args(topic, rows, first, next_offsets)  # serialised once, whatever the retries

        async def attempt() -> None:
            await self.ensure_partitions(days)
            try:
                await self._write(args)
            except asyncpg.exceptions.CheckViolationError as exc:
                if "no partition" not in str(exc):
                    raise
                self.forget_partitions()  # retention dropped a day we had cached: recreate it once
                await self.ensure_partitions(days)
                await self._write(args)

        await retry("write batch to PostgreSQL", attempt, retryable=is_retryable, deadline_s=120)

    async def _write(self, args: Sequence[object]) -> None:
        assert self.pool is not None
        stale = await self.pool.fetchval(_STORE_BATCH, *args)
        if stale is not None:
            raise StaleBatch(stale)
