"""PostgreSQL sink: one transaction per batch holding the rows and the Kafka offsets they cover."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import asyncpg
import orjson

from app.records import EPOCH, NEW_ROW, Decision, FingerprintState, Outcome
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


def _json(value: Mapping[str, str]) -> str:
    return orjson.dumps(value).decode()


@dataclass
class BatchRows:
    """A batch collapsed to one statement's worth of rows per table."""

    # Times the pipeline keeps (message times) go as integer milliseconds, converted in SQL.
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
                episodes[fp] = opens
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
        st.event_id, e.fingerprint, e.status, _json(e.labels), _json(e.annotations), e.starts_at,
        e.ends_at, e.generator_url, st.received_ms, o.decision.value, st.last_seen_ms,
        st.duplicates, st.flapping, o.severity, o.classification, e.source, e.receiver,
    ]  # fmt: skip


def _alert_row(o: Outcome, st: FingerprintState, *, episodes: int) -> list[object]:
    e = o.event
    assert e is not None
    return [
        e.fingerprint, _json(e.labels), _json(e.annotations), st.status, st.starts_at_ms, e.ends_at,
        e.generator_url, st.received_ms, st.last_seen_ms, st.event_id, st.flapping, o.severity,
        episodes, e.receiver,
    ]  # fmt: skip


_INSERT_EVENTS = """
INSERT INTO alert_events (id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url,
                          received_at, decision, last_seen_at, duplicates, flapping, severity, classification,
                          source, receiver)
SELECT id, fingerprint, status, labels::jsonb, annotations::jsonb, starts_at, ends_at, generator_url,
       to_timestamp(received_ms / 1e3::float8), decision, to_timestamp(last_seen_ms / 1e3::float8), duplicates,
       flapping, severity, classification, source, receiver
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
            $7::timestamptz[], $8::text[], $9::bigint[], $10::text[], $11::bigint[],
            $12::int[], $13::bool[], $14::text[], $15::text[], $16::text[], $17::text[])
     AS u(id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, received_ms,
          decision, last_seen_ms, duplicates, flapping, severity, classification, source, receiver)
ON CONFLICT (id, received_at) DO NOTHING
"""

_UPDATE_COUNTERS = """
UPDATE alert_events AS e SET duplicates = u.duplicates, last_seen_at = u.last_seen_at
FROM (SELECT id, duplicates, to_timestamp(seen / 1e3::float8) AS last_seen_at,
             to_timestamp(received / 1e3::float8) AS received_at
      FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::bigint[]) AS t(id, duplicates, seen, received)) AS u
WHERE e.id = u.id AND e.received_at = u.received_at  -- received_at prunes to the row's partition
"""

# `episodes` is the batch's count of episode openings; one fewer when its first event had no state to
# compare with and the row already holds that episode (`resumes` = the event's startsAt).
_UPSERT_ALERTS = """
INSERT INTO alerts AS a (fingerprint, labels, annotations, status, starts_at, ends_at, generator_url, since,
                         last_seen_at, last_event_id, flapping, severity, episodes, receiver)
SELECT b.fingerprint, labels::jsonb, annotations::jsonb, status, to_timestamp(starts_ms / 1e3::float8), ends_at,
       generator_url, to_timestamp(since_ms / 1e3::float8), to_timestamp(last_seen_ms / 1e3::float8),
       last_event_id, flapping, severity,
       episodes - CASE WHEN resumes_ms IS NULL THEN 0 ELSE
           (SELECT count(*) FROM alerts x
            WHERE x.fingerprint = b.fingerprint AND x.starts_at = to_timestamp(resumes_ms / 1e3::float8))::int END,
       receiver
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[],
            $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bool[], $12::text[],
            $13::int[], $14::text[], $15::bigint[])
     AS b(fingerprint, labels, annotations, status, starts_ms, ends_at, generator_url, since_ms, last_seen_ms,
          last_event_id, flapping, severity, episodes, receiver, resumes_ms)
ON CONFLICT (fingerprint) DO UPDATE SET
    labels = excluded.labels, annotations = excluded.annotations, status = excluded.status,
    starts_at = excluded.starts_at, ends_at = excluded.ends_at, generator_url = excluded.generator_url,
    since = excluded.since, last_seen_at = excluded.last_seen_at, last_event_id = excluded.last_event_id,
    flapping = excluded.flapping, severity = excluded.severity, receiver = excluded.receiver,
    episodes = a.episodes + excluded.episodes
"""

# A resend changes nothing of its alert but when it was last seen (a HOT update: no index covers it).
_TOUCH_ALERTS = """
UPDATE alerts AS a SET last_seen_at = to_timestamp(u.seen / 1e3::float8)
FROM unnest($1::text[], $2::bigint[]) AS u(fingerprint, seen)
WHERE a.fingerprint = u.fingerprint
"""

_LOCK_OFFSETS = """
SELECT partition, next_offset FROM sink_offsets WHERE topic = $1 AND partition = ANY($2::int[]) FOR UPDATE
"""

_UPSERT_OFFSETS = """
INSERT INTO sink_offsets (topic, partition, next_offset, updated_at)
SELECT $1, p, o, now() FROM unnest($2::int[], $3::bigint[]) AS t(p, o)
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
WHERE sink_offsets.next_offset < excluded.next_offset
"""


# JSON goes as text[] and is cast in SQL: a jsonb[] parameter runs the Python codec once per element.
def _columns(rows: Sequence[Sequence[object]], width: int) -> list[list[object]]:
    return [[r[i] for r in rows] for i in range(width)]


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


async def open_pool(url: str, size: int) -> asyncpg.Pool:
    """An asyncpg pool with our codecs, retried while PostgreSQL is still starting."""
    return await retry(
        "connect to PostgreSQL",
        lambda: asyncpg.create_pool(url, min_size=1, max_size=size, init=_init_connection),
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

        async def attempt() -> None:
            await self.ensure_partitions(days)
            try:
                await self._write(topic, rows, first, next_offsets)
            except asyncpg.exceptions.CheckViolationError as exc:
                if "no partition" not in str(exc):
                    raise
                self.forget_partitions()  # retention dropped a day we had cached: recreate it once
                await self.ensure_partitions(days)
                await self._write(topic, rows, first, next_offsets)

        await retry("write batch to PostgreSQL", attempt, retryable=is_retryable, deadline_s=120)

    async def _write(
        self, topic: str, rows: BatchRows, first: Mapping[int, int], next_offsets: Mapping[int, int]
    ) -> None:
        assert self.pool is not None
        parts = sorted(next_offsets)
        async with self.pool.acquire() as conn, conn.transaction():
            stored = {r["partition"]: r["next_offset"] for r in await conn.fetch(_LOCK_OFFSETS, topic, parts)}
            for partition, offset in first.items():
                if stored.get(partition, 0) > offset:
                    raise StaleBatch(
                        f"{topic}[{partition}] already stored up to {stored[partition]}, batch starts at {offset}"
                    )
            if rows.inserts:
                await conn.execute(_INSERT_EVENTS, *_columns(list(rows.inserts.values()), 17))
            if rows.counters:
                await conn.execute(_UPDATE_COUNTERS, *_columns([(i, *c) for i, c in rows.counters.items()], 4))
            if rows.alerts:
                await conn.execute(_UPSERT_ALERTS, *_columns(list(rows.alerts.values()), 15))
            if rows.touches:
                await conn.execute(_TOUCH_ALERTS, list(rows.touches), list(rows.touches.values()))
            await conn.execute(_UPSERT_OFFSETS, topic, parts, [next_offsets[p] for p in parts])
