"""The store function in PostgreSQL: a sender's times come back to the microsecond, whatever the year."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from app.services import Endpoints
from sinks.postgres import _STORE_BATCH, BatchRows, _us, store_batch_args
from tests.fixtures import scratch_database


@pytest.fixture
async def db(endpoints: Endpoints) -> AsyncIterator[asyncpg.Connection]:
    async with scratch_database(endpoints, "store") as conn:
        yield conn


@pytest.mark.parametrize(
    ("starts", "ends"),
    [
        (datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC), None),
        # A float timestamp is a microsecond off for some of these: before 1970, after 2100.
        (datetime(1969, 7, 20, 20, 17, 40, 999999, tzinfo=UTC), datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (datetime(1911, 5, 25, 6, 43, 29, 962911, tzinfo=UTC), datetime(2132, 3, 11, 10, 46, 12, 568565, tzinfo=UTC)),
    ],
)
async def test_senders_times_are_stored_exactly(
    db: asyncpg.Connection, starts: datetime, ends: datetime | None
) -> None:
    received_ms = 1_764_637_323_000
    await db.execute("SELECT alert_events_ensure_partition('2025-12-02')")
    event = [
        7, "fp", "firing", {"alertname": "T"}, {"summary": "s"}, _us(starts), _us(ends), "", received_ms,
        "first_seen", received_ms, 0, False, "none", "other", None, None,
    ]  # fmt: skip
    alert = ["fp", {"alertname": "T"}, {}, "firing", received_ms, _us(ends), "", received_ms, received_ms, 7, False,
             "none", 1, None, None]  # fmt: skip
    rows = BatchRows(inserts={7: event}, alerts={"fp": alert})
    assert await db.fetchval(_STORE_BATCH, *store_batch_args("t", rows, {0: 0}, {0: 1})) is None
    row = await db.fetchrow(
        "SELECT starts_at, ends_at, jsonb_typeof(labels) AS labels, labels ->> 'alertname' AS alertname, received_at"
        " FROM alert_events WHERE id = 7"
    )
    assert (row["starts_at"], row["ends_at"]) == (starts, ends)
    assert (row["labels"], row["alertname"]) == ("object", "T")  # an object, not a JSON string
    assert row["received_at"] == datetime(2025, 12, 2, 1, 2, 3, tzinfo=UTC)
    assert await db.fetchval("SELECT ends_at FROM alerts WHERE fingerprint = 'fp'") == ends
