"""A database that applied migration 013 with its episodes kept (the range index, SP-GiST) upgrades through 014
(the slot index) to the same episodes, row for row, as a database migrated fresh and given the same history."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from app.migrate import discover, migrate
from app.seed import seed_events
from app.services import Endpoints
from tests.fixtures import scratch_database_url

REPO = Path(__file__).resolve().parents[2]
N_EVENTS, FINGERPRINTS, DAYS = 4_000, 211, 3
EPISODES = (
    "SELECT fingerprint, starts_at, ends_at, resolved, labels, annotations, generator_url, receiver, updated_at,"
    " event_id, event_received_at, slot FROM alert_episodes ORDER BY fingerprint, starts_at"
)


async def test_a_database_with_013s_episodes_upgrades_to_the_rows_a_fresh_one_has(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    upto_013 = tmp_path / "migrations"
    upto_013.mkdir()
    for m in discover():
        if m.version <= 13:
            shutil.copy(REPO / "migrations" / m.name, upto_013 / m.name)
    now = datetime.now(UTC)
    name = f"upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(endpoints.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        old_url = endpoints.database_url.rsplit("/", 1)[0] + "/" + name
        await migrate(old_url, upto_013)
        old = await asyncpg.connect(old_url)
        try:
            # At 013 the seed derives the episodes through 013's rebuild, into the SP-GiST-indexed range column.
            assert await old.fetchval("SELECT to_regclass('alert_episodes_active') IS NOT NULL")
            await seed_events(old, N_EVENTS, days=DAYS, now=now, fingerprints=FINGERPRINTS)
            kept = await old.fetchval("SELECT count(*) FROM alert_episodes")
            assert kept > N_EVENTS // 4
            assert "014_episodes_slots.sql" in await migrate(old_url)
            assert await old.fetchval("SELECT to_regclass('alert_episodes_active') IS NULL")
            upgraded = [tuple(r) for r in await old.fetch(EPISODES)]
        finally:
            await old.close()
        async with scratch_database_url(endpoints, "fresh") as fresh_url:
            fresh = await asyncpg.connect(fresh_url)
            try:
                await seed_events(fresh, N_EVENTS, days=DAYS, now=now, fingerprints=FINGERPRINTS)
                expected = [tuple(r) for r in await fresh.fetch(EPISODES)]
            finally:
                await fresh.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
    assert len(upgraded) == kept
    assert sum(r[-1] is not None for r in upgraded) > kept // 2  # most have a slot: they ended
    assert upgraded == expected
