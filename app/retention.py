"""Partition upkeep for `alert_events`: create days ahead, drop days past RETENTION_DAYS.

Whole partitions are dropped, never rows deleted: no bloat, no vacuum debt, constant time per day.
Every worker runs this hourly; an advisory lock lets one of them do it at a time.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from app import metrics

log = logging.getLogger(__name__)

_LOCK_KEY = 0x616C72746D61696E  # "alrtmain"
_PARTITION = re.compile(r"^alert_events_(\d{8})$")
DAYS_AHEAD = 2  # tomorrow's partition exists before midnight, so writes never wait on DDL


@dataclass(frozen=True)
class Upkeep:
    created: list[date]
    dropped: list[str]


async def partitions(conn: asyncpg.Connection) -> dict[date, str]:
    """The daily partitions of alert_events, by day."""
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'alert_events'::regclass"""
    )
    out = {}
    for r in rows:
        m = _PARTITION.match(r["relname"])
        if m:
            out[datetime.strptime(m.group(1), "%Y%m%d").date()] = r["relname"]
    return out


async def upkeep(pool: asyncpg.Pool, retention_days: int, now: datetime | None = None) -> Upkeep:
    """Ensure today's and the next days' partitions; drop those wholly older than the retention."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    cutoff = today - timedelta(days=retention_days)  # a day is dropped once all of it is past the cutoff
    created: list[date] = []
    dropped: list[str] = []
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return Upkeep(created, dropped)  # another worker is at it
        try:
            for k in range(DAYS_AHEAD + 1):
                day = today + timedelta(days=k)
                if await conn.fetchval("SELECT alert_events_ensure_partition($1)", day):
                    created.append(day)
            for day, name in sorted((await partitions(conn)).items()):
                if day >= cutoff:
                    continue
                # lock_timeout: never queue behind a long report and stall every writer queued behind us.
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '5s'")
                    await conn.execute(f'DROP TABLE "{name}"')  # name matched ^alert_events_\d{8}$
                    # The /report rollups of that day and before go with it (migration 012).
                    await conn.execute(
                        "SELECT alert_history_rollups_drop_before($1)",
                        datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1),
                    )
                dropped.append(name)
                metrics.PARTITIONS_DROPPED.inc()
            # Current state of alerts not heard of within the retention goes too (a small table), and the
            # records of refused messages and of deliveries that old.
            horizon = datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC)
            await conn.execute("DELETE FROM alerts WHERE last_seen_at < $1", horizon)
            await conn.execute("DELETE FROM refused_messages WHERE refused_at < $1", horizon)
            # The publish agent's ledger: a notify message that old is long gone from Kafka, never replayed.
            await conn.execute("DELETE FROM deliveries WHERE finished_at < $1", horizon)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    if created or dropped:
        log.info(
            "partition upkeep: created %s, dropped %s",
            [str(d) for d in created],
            dropped,
            extra={"partitions_created": [str(d) for d in created], "partitions_dropped": dropped},
        )
    return Upkeep(created, dropped)
