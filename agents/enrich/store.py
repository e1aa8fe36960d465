"""The enrich stage's PostgreSQL: what the rows already hold, the classification and filter written onto them (one
statement per batch), and the delayed firings (migration 011). Every row is found by (id, received_at), the
received_at pruning to its day's partition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.events import rfc3339
from app.records import EPOCH, MILLISECOND

RELEASE_BATCH = 500
# Each statement names the days of its rows (received_at = ANY): PostgreSQL reads only those days' partitions.
KNOWN_SQL = (
    "SELECT id, classification, filter FROM alert_events WHERE id = ANY($1::bigint[]) "
    "AND received_at = ANY($2::timestamptz[])"
)
RECORD_SQL = """UPDATE alert_events AS e SET classification = u.c, filter = u.f
    FROM unnest($1::bigint[], $2::timestamptz[], $3::jsonb[], $4::jsonb[]) AS u(id, received_at, c, f)
    WHERE e.id = u.id AND e.received_at = u.received_at AND e.received_at = ANY($5::timestamptz[])
      AND e.filter IS NULL"""


def at_ms(ms: int) -> datetime:
    return EPOCH + ms * MILLISECOND


@dataclass(frozen=True, slots=True)
class Known:
    """What a stored row already holds of the enrich stage."""

    classification: dict[str, Any] | None
    filter: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Delayed:
    """A delayed firing taken out of the table: released now, or cancelled by a resolve."""

    event_id: int
    fingerprint: str
    received_at: datetime
    message: dict[str, Any]
    resolve_id: int | None = None  # the resolve that took it out, if one did
    cancelled: bool = False  # the resolve came before the delay ended: neither is published


async def known(conn: asyncpg.Connection, ids: Sequence[int], received_ms: Sequence[int]) -> dict[int, Known]:
    """The batch's rows that exist, with their classification and filter (None until decided)."""
    rows = await conn.fetch(KNOWN_SQL, list(ids), sorted({at_ms(ms) for ms in received_ms}))
    return {r["id"]: Known(r["classification"], r["filter"]) for r in rows}


async def record(
    conn: asyncpg.Connection, ids: Sequence[int], received_ms: Sequence[int], classifications: Sequence[str],
    filters: Sequence[str],
) -> int:
    """Classification and filter onto each row that has no filter yet (JSON texts); the number of rows written."""
    received = [at_ms(ms) for ms in received_ms]
    status = await conn.execute(
        RECORD_SQL, list(ids), received, list(classifications), list(filters), sorted(set(received))
    )
    return int(status.split()[-1])


async def delay(conn: asyncpg.Connection, topic: str, rows: Sequence[tuple[int, str, int, int, str]]) -> None:
    """Delayed firings (event id, fingerprint, received ms, release ms, message JSON) into the table."""
    if not rows:
        return
    ids, fps, received, release, messages = zip(*rows, strict=True)
    await conn.execute(
        """INSERT INTO enrich_delayed (topic, event_id, fingerprint, received_at, release_at, message)
           SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::jsonb[])
           ON CONFLICT DO NOTHING""",
        topic, list(ids), list(fps), [at_ms(ms) for ms in received], [at_ms(ms) for ms in release], list(messages),
    )  # fmt: skip


async def take_for_resolves(
    conn: asyncpg.Connection, topic: str, resolves: Sequence[tuple[str, int, int]]
) -> list[Delayed]:
    """The delayed firings of these resolves' fingerprints (fingerprint, resolve id, received ms) that came before
    them, out of the table: cancelled when the resolve came before the delay ended, else due (released now, so
    the firing is published before its resolve)."""
    if not resolves:
        return []
    fps, ids, received = zip(*resolves, strict=True)
    rows = await conn.fetch(
        """DELETE FROM enrich_delayed AS d
           USING unnest($2::text[], $3::bigint[], $4::timestamptz[]) AS r(fingerprint, id, received_at)
           WHERE d.topic = $1 AND d.fingerprint = r.fingerprint AND d.event_id < r.id
           RETURNING d.event_id, d.fingerprint, d.received_at, d.message, r.id AS resolve_id,
                     r.received_at < d.release_at AS cancelled""",
        topic, list(fps), list(ids), [at_ms(ms) for ms in received],
    )  # fmt: skip
    return sorted((Delayed(**dict(r)) for r in rows), key=lambda d: d.event_id)


async def take_due(conn: asyncpg.Connection, topic: str, limit: int = RELEASE_BATCH) -> list[Delayed]:
    """Delayed firings whose delay has ended, locked (other workers skip them) and deleted in this transaction."""
    rows = await conn.fetch(
        """DELETE FROM enrich_delayed WHERE (topic, event_id) IN (
               SELECT topic, event_id FROM enrich_delayed WHERE topic = $1 AND release_at <= now()
               ORDER BY release_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING event_id, fingerprint, received_at, message""",
        topic, limit,
    )  # fmt: skip
    return sorted((Delayed(**dict(r)) for r in rows), key=lambda d: d.event_id)


async def mark(conn: asyncpg.Connection, taken: Sequence[Delayed], now: datetime) -> None:
    """Each delayed firing's row says how its delay ended: `released` (when), or `cancelled_by` (the resolve)."""
    if not taken:
        return
    notes = [
        {"cancelled_by": str(d.resolve_id)} if d.cancelled else {"released": rfc3339(now)} for d in taken
    ]  # fmt: skip
    received = [d.received_at for d in taken]
    await conn.execute(
        """UPDATE alert_events AS e SET filter = coalesce(e.filter, '{}'::jsonb) || u.note
           FROM unnest($1::bigint[], $2::timestamptz[], $3::jsonb[]) AS u(id, received_at, note)
           WHERE e.id = u.id AND e.received_at = u.received_at AND e.received_at = ANY($4::timestamptz[])""",
        [d.event_id for d in taken], received, notes, sorted(set(received)),
    )  # fmt: skip


async def pending(conn: asyncpg.Connection | asyncpg.Pool, topic: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM enrich_delayed WHERE topic = $1", topic))
