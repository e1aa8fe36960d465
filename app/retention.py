"""Partition upkeep for `alert_events`: create days ahead, drop days past RETENTION_DAYS, and keep the statistics
of the days being written fresh.

Whole partitions are dropped, never rows deleted: no bloat, no vacuum debt, constant time per day.
Every worker runs the upkeep hourly and `analyze_filling` every minute; advisory locks let one of them do each at a
time.
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
_ANALYZE_LOCK_KEY = 0x616C7274616E6C7A  # "alrtanlz"
_PARTITION = re.compile(r"^alert_events_(\d{8})$")
DAYS_AHEAD = 2  # tomorrow's partition exists before midnight, so writes never wait on DDL
# A filling day is analyzed again once it holds this much more than at its last ANALYZE (and a never-analyzed one
# once it holds any rows): a few dozen ANALYZEs a day, most in its first hours, when its statistics go stale fastest.
ANALYZE_GROWTH = 1.2
ANALYZE_MIN_ROWS = 1000


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
            # Episodes that ended before the cut (time travel answers within the retention only).
            await conn.execute("SELECT alert_history_episodes_drop_before($1)", horizon)  # migration 014's
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


async def analyze_filling(conn: asyncpg.Connection, now: datetime | None = None) -> list[str]:
    """ANALYZE today's and yesterday's partitions (late events land there) when they have grown since their last
    statistics: the planner must not plan /history on a day it believes empty (a bitmap of every matching row,
    then a sort, instead of walking the time index). Autovacuum's threshold lags a new day by minutes."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    names = [f"alert_events_{d:%Y%m%d}" for d in (today, today - timedelta(days=1))]
    analyzed: list[str] = []
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _ANALYZE_LOCK_KEY):
        return analyzed  # another worker is at it
    try:
        # reltuples: rows at the last ANALYZE (-1 never); n_live_tup: counted on every insert since.
        stale = await conn.fetch(
            """SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
               WHERE c.relname = ANY($1::text[])
                 AND s.n_live_tup > CASE WHEN c.reltuples < 0 THEN 0 ELSE c.reltuples * $2 + $3 END""",
            names,
            ANALYZE_GROWTH,
            ANALYZE_MIN_ROWS,
        )
        for (name,) in stale:
            await conn.execute(f'ANALYZE "{name}"')  # name built above from a date: alert_events_YYYYMMDD
            analyzed.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _ANALYZE_LOCK_KEY)
    if analyzed:
        log.debug("analyzed filling partitions %s", analyzed)
    return analyzed
