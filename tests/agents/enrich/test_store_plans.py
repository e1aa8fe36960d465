"""On a seeded table of events over 10 days, the enrich agent's per-batch statements read only the days of their
rows, through the primary key (plans, never timings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from agents.enrich.store import KNOWN_SQL, RECORD_SQL
from app.seed import seed_events
from app.services import Endpoints
from tests.fixtures import scratch_database
from tests.web.test_query_plans import explain, scanned_partitions, seq_scans

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
async def seeded(endpoints: Endpoints) -> AsyncIterator[asyncpg.Connection]:
    async with scratch_database(endpoints, "enrich_plans") as conn:
        await seed_events(conn, 200_000, days=10, now=NOW)
        yield conn


async def test_a_batch_reads_and_writes_only_its_days(seeded: asyncpg.Connection) -> None:
    rows = await seeded.fetch("SELECT id, received_at FROM alert_events ORDER BY received_at DESC LIMIT 200")
    ids, received = [r["id"] for r in rows], [r["received_at"] for r in rows]
    days = {f"alert_events_{t:%Y%m%d}" for t in received}
    known = await explain(seeded, KNOWN_SQL, [ids, sorted(set(received))])
    assert scanned_partitions(known) <= days and not seq_scans(known), known
    texts = ['{"category": "x"}'] * len(ids)
    record = await explain(seeded, RECORD_SQL, [ids, received, texts, texts, sorted(set(received))])
    assert scanned_partitions(record) <= days and not seq_scans(record), record
