"""PostgreSQL sink: one transaction per batch holding the rows and the Kafka offsets they cover."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import cast

import asyncpg
import orjson

from app.records import EPOCH, MICROSECOND, NEW_ROW, Decision, FingerprintState, Outcome
from app.retry import retry
from sinks.base import RowsRejected, StaleBatch, bisect

log = logging.getLogger(__name__)

_RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "08000", "08003", "08006"}


def is_retryable(exc: BaseException) -> bool:
    """The one place that decides retryable vs fatal for PostgreSQL."""
    if isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.exceptions.ConnectionDoesNotExistError):
        return True
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        return "connection" in str(exc).lower()
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) in _RETRYABLE_SQLSTATES


def is_data_error(exc: BaseException) -> bool:
    """PostgreSQL refused the rows themselves (SQLSTATE classes 22 data exception, 23 integrity constraint):
    the same rows fail however often they are sent."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and sqlstate[:2] in ("22", "23")


def _reason(exc: BaseException) -> str:
    """One line: the SQLSTATE and PostgreSQL's message with its detail."""
    text = " ".join(str(exc).split())
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{sqlstate}: {text}" if sqlstate else f"{type(exc).__name__}: {text}"


DAY_MS = 86_400_000
CONNECT_TIMEOUT_S = 10.0
# A batch call takes well under a second; one that has not answered in this long will not: retry it.
STATEMENT_TIMEOUT_S = 30.0
# Past this, the worker exits 70 rather than ack a batch it could not store (README: Exactly-once in effect).
WRITE_DEADLINE_S = 120.0


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
    # id → the `duplicates` its row held before the batch, as the state says (checked by the store: migration 016)
    stored: dict[int, int] = field(default_factory=dict)
    alerts: dict[str, list[object]] = field(default_factory=dict)
    touches: dict[str, int] = field(default_factory=dict)  # fingerprint → last seen ms, for resends only

    @classmethod
    def build(cls, outcomes: Sequence[Outcome]) -> BatchRows:
        rows = cls()
        final: dict[str, FingerprintState] = {}  # each fingerprint's state after the batch
        content: dict[str, Outcome] = {}  # its last decoded event: what the alerts row holds
        episodes: dict[str, int] = {}
        resumes: dict[str, int | None] = {}
        spans: dict[str, dict[int, list[object]]] = {}  # fingerprint → startsAt ms → its episode row (_span)
        for o in outcomes:
            if o.state is None or o.decision in (Decision.REPLAYED, Decision.LATE):
                continue
            st = o.state
            if o.decision in NEW_ROW:
                rows.inserts[st.event_id] = _event_row(o, st)
            elif st.event_id in rows.inserts:  # duplicate of a row created in this same batch
                rows.inserts[st.event_id][10:12] = [st.last_seen_ms, st.duplicates]
            else:
                if st.event_id not in rows.counters:  # its first resend in the batch: the state before it
                    rows.stored[st.event_id] = st.duplicates - (o.decision is Decision.DUPLICATE)
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
            if o.event is not None:  # a resend decided by its digest repeats what its episode has
                _span(spans.setdefault(fp, {}), o, st)
                content[fp] = o
        for fp, st in final.items():
            last = content.get(fp)
            if last is None:  # only resends of what the row holds: it was last seen now, nothing else changed
                rows.touches[fp] = st.last_seen_ms
            else:  # resends after a decoded event in this batch repeat its bytes: its content, the final state
                rows.alerts[fp] = [
                    *_alert_row(last, st, episodes=episodes[fp]),
                    resumes[fp],
                    [x[:8] for x in spans[fp].values()],
                ]
        return rows

    def days(self) -> set[date]:
        """UTC days the new rows fall on: each needs its alert_events partition."""
        return {_day(cast(int, row[8])) for row in self.inserts.values()}  # received_ms (_event_row)


def _event_row(o: Outcome, st: FingerprintState) -> list[object]:
    e = o.event
    assert e is not None, "a new row is always a decoded event"
    return [
        st.event_id, e.fingerprint, e.status, e.labels, e.annotations, _us(e.starts_at),
        _us(e.ends_at), e.generator_url, st.received_ms, o.decision.value, st.last_seen_ms,
        st.duplicates, st.flapping, o.severity, e.source, e.receiver,
    ]  # fmt: skip


def _span(spans: dict[int, list[object]], o: Outcome, st: FingerprintState) -> None:
    """Fold a decoded message into its episode's row for the episodes table (migration 013): [starts_ms, resolved,
    end_us (its last resolve's endsAt, or when that resolve's row was received; else its last firing message's
    endsAt; null: open), first row's id, its received_ms, annotations, generator_url, receiver]. The first row is
    the episode's first firing row when the batch has one."""
    e = o.event
    assert e is not None
    span = spans.get(e.starts_at_ms)
    if span is None:
        span = spans[e.starts_at_ms] = [
            e.starts_at_ms,
            False,
            None,
            st.event_id,
            st.received_ms,
            None,
            None,
            None,
            None,
        ]
    row = o.decision in NEW_ROW
    if e.status == "resolved":
        span[1] = True
        span[2] = _us(e.ends_at) if e.ends_at is not None else st.received_ms * 1000
    elif not span[1]:
        span[2] = _us(e.ends_at)
    if row and span[8] != "firing-row" and (span[8] is None or e.status == "firing"):
        span[3], span[4], span[8] = st.event_id, st.received_ms, "firing-row" if e.status == "firing" else "row"
    span[5], span[6], span[7] = e.annotations, e.generator_url, e.receiver


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
        orjson.dumps([(i, *c, rows.stored.get(i)) for i, c in rows.counters.items()]).decode(),
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
    """An asyncpg pool with our codecs, retried while PostgreSQL is still starting. `command_timeout`: the
    client-side bound of every statement, so a PostgreSQL that stops answering raises instead of hanging."""
    return await retry(
        "connect to PostgreSQL",
        lambda: asyncpg.create_pool(
            url,
            min_size=1,
            max_size=size,
            init=_init_connection,
            command_timeout=command_timeout,
            timeout=CONNECT_TIMEOUT_S,
        ),
        retryable=is_retryable,
    )


class PostgresSink:
    def __init__(self, database_url: str, *, pool_size: int = 4) -> None:
        self._url = database_url
        self._pool_size = pool_size
        self.pool: asyncpg.Pool | None = None
        self._partitions: set[date] = set()  # days whose alert_events partition is known to exist

    async def open(self) -> None:
        self.pool = await open_pool(self._url, self._pool_size, command_timeout=STATEMENT_TIMEOUT_S)

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
        days, args = self._prepare(topic, outcomes, next_offsets)  # serialised once, whatever the retries
        # Set once an attempt ends without an answer (timeout, lost connection): it may have committed.
        uncertain = False

        async def attempt() -> None:
            nonlocal uncertain
            try:
                await self._write_once(days, args)
            except StaleBatch:
                if uncertain and await self._holds(topic, next_offsets):
                    return  # an earlier attempt committed before its answer was lost: stored, exactly once
                raise
            except Exception as exc:
                if is_data_error(exc):
                    raise RowsRejected(f"PostgreSQL refused the batch: {_reason(exc)}") from exc
                uncertain = uncertain or is_retryable(exc)
                raise

        await retry(
            "write batch to PostgreSQL", attempt, retryable=is_retryable, deadline_s=WRITE_DEADLINE_S,
            attempt_timeout_s=STATEMENT_TIMEOUT_S,
        )  # fmt: skip

    async def rejected(
        self, topic: str, outcomes: Sequence[Outcome], next_offsets: Mapping[int, int]
    ) -> list[tuple[Outcome, str]]:
        """Each outcome PostgreSQL refuses alone, found by trial writes that are rolled back."""
        assert self.pool is not None
        pool = self.pool

        async def refuses(part: Sequence[Outcome]) -> str | None:
            try:
                days, args = self._prepare(topic, part, next_offsets)
            except RowsRejected as exc:
                return str(exc)
            await self.ensure_partitions(days)
            try:
                async with pool.acquire() as conn:
                    tx = conn.transaction()
                    await tx.start()
                    try:
                        await conn.fetchval(_STORE_BATCH, *args)
                    finally:
                        await tx.rollback()  # a trial: nothing of it stays
            except Exception as exc:
                if is_data_error(exc):
                    return _reason(exc)
                raise
            return None

        return await bisect(outcomes, refuses)

    def _prepare(
        self, topic: str, outcomes: Sequence[Outcome], next_offsets: Mapping[int, int]
    ) -> tuple[set[date], list[object]]:
        rows = BatchRows.build(outcomes)
        first: dict[int, int] = {}
        for o in outcomes:
            first.setdefault(o.position.partition, o.position.offset)
        try:
            return rows.days(), store_batch_args(topic, rows, first, next_offsets)
        except (TypeError, ValueError) as exc:  # orjson: text it cannot encode (a lone surrogate), a too deep value
            raise RowsRejected(f"rows cannot be encoded for PostgreSQL: {exc}") from exc

    async def _write_once(self, days: set[date], args: Sequence[object]) -> None:
        await self.ensure_partitions(days)
        try:
            await self._write(args)
        except asyncpg.exceptions.CheckViolationError as exc:
            if "no partition" not in str(exc):
                raise
            self.forget_partitions()  # retention dropped a day we had cached: recreate it once
            await self.ensure_partitions(days)
            await self._write(args)

    async def refuse(self, topic: str, messages: Mapping[tuple[int, int], str]) -> None:
        assert self.pool is not None
        await self.pool.executemany(
            'INSERT INTO refused_messages (topic, partition, "offset", reason) VALUES ($1, $2, $3, $4) '
            "ON CONFLICT DO NOTHING",
            [(topic, p, o, reason) for (p, o), reason in messages.items()],
        )

    async def refused_messages(self, topic: str) -> dict[tuple[int, int], str]:
        assert self.pool is not None
        rows = await self.pool.fetch('SELECT partition, "offset", reason FROM refused_messages WHERE topic = $1', topic)
        return {(r["partition"], r["offset"]): r["reason"] for r in rows}

    async def _holds(self, topic: str, next_offsets: Mapping[int, int]) -> bool:
        stored = await self.committed_offsets(topic)
        return all(stored.get(p) == offset for p, offset in next_offsets.items())

    async def _write(self, args: Sequence[object]) -> None:
        assert self.pool is not None
        stale = await self.pool.fetchval(_STORE_BATCH, *args)
        if stale is not None:
            raise StaleBatch(stale)
