"""Daily partitions of alert_events: created ahead, dropped whole past RETENTION_DAYS, recreated on demand."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from app.retention import DAYS_AHEAD, partitions, upkeep
from app.services import Endpoints
from sinks.postgres import PostgresSink, open_pool


@pytest.fixture
async def pool(endpoints: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(endpoints.database_url, 2)
    yield p
    await p.close()


async def _insert(pool: asyncpg.Pool, event_id: int, at: datetime) -> None:
    await pool.execute(
        """INSERT INTO alert_events (id, fingerprint, status, labels, starts_at, received_at, last_seen_at,
                                     severity, decision)
           VALUES ($1, 'feedfacefeedface', 'firing', '{"alertname": "Old"}', $2, $2, $2, 'none', 'first_seen')""",
        event_id,
        at,
    )


async def test_upkeep_creates_days_ahead_and_drops_whole_days_past_retention(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    old_day, kept_day = date(2001, 1, 1), (now - timedelta(days=29)).date()
    for day in (old_day, kept_day):
        await pool.execute("SELECT alert_events_ensure_partition($1)", day)
    await _insert(pool, 1 << 62, datetime(2001, 1, 1, 12, tzinfo=UTC))
    await _insert(pool, (1 << 62) + 1, datetime(kept_day.year, kept_day.month, kept_day.day, 12, tzinfo=UTC))

    done = await upkeep(pool, retention_days=30, now=now)

    assert "alert_events_20010101" in done.dropped
    async with pool.acquire() as conn:
        days = await partitions(conn)
    assert old_day not in days and kept_day in days
    assert all(now.date() + timedelta(days=k) in days for k in range(DAYS_AHEAD + 1))
    assert await pool.fetchval("SELECT count(*) FROM alert_events WHERE id = $1", 1 << 62) == 0
    assert await pool.fetchval("SELECT count(*) FROM alert_events WHERE id = $1", (1 << 62) + 1) == 1
    again = await upkeep(pool, retention_days=30, now=now)
    assert again.created == [] and "alert_events_20010101" not in again.dropped


async def test_upkeep_drops_refused_messages_and_deliveries_past_retention(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    old, kept = now - timedelta(days=31), now - timedelta(days=29)
    topic = f"retention-{uuid.uuid4().hex[:8]}"
    for offset, at in ((1, old), (2, kept)):
        await pool.execute(
            'INSERT INTO refused_messages (topic, partition, "offset", reason, refused_at) VALUES ($1, 0, $2, $3, $4)',
            topic, offset, "22P05: test", at,
        )  # fmt: skip
        await pool.execute(
            """INSERT INTO deliveries (event_id, target, fingerprint, status, starts_at, outcome, finished_at)
               VALUES ($1, $2, 'feedfacefeedface', 'firing', $3, 'delivered', $3)""",
            offset, topic, at,
        )  # fmt: skip
    await upkeep(pool, retention_days=30, now=now)
    assert await pool.fetchval('SELECT array_agg("offset") FROM refused_messages WHERE topic = $1', topic) == [2]
    assert await pool.fetchval("SELECT array_agg(event_id) FROM deliveries WHERE target = $1", topic) == [2]


async def test_upkeep_drops_episodes_that_ended_before_the_cut(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    cut = datetime.combine((now - timedelta(days=30)).date(), datetime.min.time(), UTC)
    fp = uuid.uuid4().hex[:16]
    episodes = {  # starts_at → ends_at
        cut - timedelta(days=3): cut - timedelta(days=2),  # ended before the cut: dropped
        cut - timedelta(days=2): cut - timedelta(days=2, hours=1),  # ended before it started (empty): dropped
        cut - timedelta(days=1): cut + timedelta(hours=1),  # ended after the cut: kept
        cut - timedelta(hours=1): None,  # still open: kept
    }
    for starts, ends in episodes.items():
        await pool.execute(
            """INSERT INTO alert_episodes (fingerprint, starts_at, ends_at, resolved, labels, updated_at, event_id,
                                           event_received_at)
               VALUES ($1, $2, $3, $4, '{"alertname": "Old"}', $2, 1, $2)""",
            fp, starts, ends, ends is not None,
        )  # fmt: skip
    await upkeep(pool, retention_days=30, now=now)
    kept = await pool.fetch("SELECT starts_at FROM alert_episodes WHERE fingerprint = $1 ORDER BY 1", fp)
    assert [r["starts_at"] for r in kept] == [cut - timedelta(days=1), cut - timedelta(hours=1)]


async def test_the_sink_recreates_a_day_dropped_behind_its_back(endpoints: Endpoints) -> None:
    from agents import dedup, state
    from app.records import Outcome
    from tests.factories import T0, event

    sink = PostgresSink(endpoints.database_url)
    await sink.open()
    try:
        assert sink.pool is not None
        topic = f"retention-{uuid.uuid4().hex[:8]}"
        ev = event(fingerprint=uuid.uuid4().hex[:16], labels={"alertname": "Recreated"})
        decision = dedup.decide(None, ev, window_ms=1000)
        st = state.advance(None, ev, decision, state.FlapRule(1000, 4), await sink.topic_code(topic))
        day = T0.date()
        await sink.ensure_partitions({day})  # now cached as existing...
        await sink.pool.execute(f'DROP TABLE IF EXISTS "alert_events_{day:%Y%m%d}"')  # ...and dropped
        outcome = Outcome(ev.fingerprint, ev.position, decision, st, ev, severity="none")
        await sink.write(topic, [outcome], {0: 1})
        assert await sink.pool.fetchval("SELECT count(*) FROM alert_events WHERE id = $1", st.event_id) == 1
    finally:
        await sink.close()
