"""On a seeded table of 1M events over 30 days, the main query shapes use the indexes and prune partitions.

Assertions are on EXPLAIN plans, never on time (timings live in `make bench`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from app.matchers import parse_filters
from app.retention import analyze_filling
from app.seed import seed_events
from app.services import Endpoints
from sinks.postgres import _STORE_BATCH, BatchRows, store_batch_args
from tests.fixtures import scratch_database
from web.queries import HistoryQuery, firing_at_json_sql, history_at_sql

N_EVENTS = 1_000_000
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
async def plans(endpoints: Endpoints) -> AsyncIterator[asyncpg.Connection]:
    async with scratch_database(endpoints, "plans") as conn:
        await seed_events(conn, N_EVENTS, days=30, now=NOW)
        yield conn


async def explain(conn: asyncpg.Connection, sql: str, args: list[Any]) -> list[dict[str, Any]]:
    """Every node of the plan, flattened."""
    plan = orjson.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))[0]["Plan"]
    nodes, todo = [], [plan]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


def scanned_partitions(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["Relation Name"] for n in nodes if "Relation Name" in n and n["Relation Name"] != "alert_events"}


def seq_scans(nodes: list[dict[str, Any]]) -> list[str]:
    """Sequential scans of partitions of some size. An empty day ahead costs nothing to scan, and the first day
    of the seeded range holds only the minutes from NOW's time of day to midnight: when the suite starts near
    the end of a UTC day, a few hundred rows that the planner rightly reads in one sweep (cost under 50)."""
    return [n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan" and n["Total Cost"] > 50]


async def test_seeded(plans: asyncpg.Connection) -> None:
    assert await plans.fetchval("SELECT count(*) FROM alert_events") == N_EVENTS


async def test_matcher_and_24h_range_uses_an_index_on_two_days_only(plans: asyncpg.Connection) -> None:
    q = HistoryQuery(matchers=parse_filters(['alertname="Alert7"']), since=NOW - timedelta(hours=24), until=NOW)
    nodes = await explain(plans, *q.sql())
    assert len(scanned_partitions(nodes)) <= 2, scanned_partitions(nodes)
    assert not seq_scans(nodes)
    assert any(n["Node Type"] in ("Index Scan", "Bitmap Index Scan", "Index Only Scan") for n in nodes)


async def test_alertname_page_is_read_in_order_from_the_alertname_index(plans: asyncpg.Connection) -> None:
    """alertname="X" + 24 h, limit 100: the (alertname, time) index of migration 015 walks to the page's rows, no
    rows of other alerts filtered out and no sort."""
    q = HistoryQuery(
        matchers=parse_filters(['alertname="Alert7"', 'severity!="none"']),
        since=NOW - timedelta(hours=24),
        until=NOW,
        limit=100,
    )
    nodes = await explain(plans, *q.sql())
    by_alertname = [n for n in nodes if n["Node Type"] == "Index Scan" and "alertname" in n.get("Index Cond", "")]
    assert by_alertname, [(n["Node Type"], n.get("Index Name"), n.get("Index Cond")) for n in nodes]
    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Bitmap Heap Scan", "Seq Scan")]


async def test_rare_label_value_over_30_days_uses_the_gin_index(plans: asyncpg.Connection) -> None:
    q = HistoryQuery(matchers=parse_filters(['instance="host4242:9100"']), since=NOW - timedelta(days=30))
    nodes = await explain(plans, *q.sql())
    gin = [n for n in nodes if n["Node Type"] == "Bitmap Index Scan" and n["Index Name"].endswith("labels_idx")]
    assert gin, [(n["Node Type"], n.get("Index Name")) for n in nodes]
    assert not seq_scans(nodes)


async def test_next_page_seeks_the_keyset_in_the_time_index(plans: asyncpg.Connection) -> None:
    cursor = (NOW - timedelta(hours=3), 1 << 61)
    q = HistoryQuery(since=NOW - timedelta(hours=24), before=cursor)
    nodes = await explain(plans, *q.sql())
    conds = [n.get("Index Cond", "") for n in nodes if n["Node Type"] == "Index Scan"]
    assert conds and all("received_at" in c for c in conds), conds
    assert not seq_scans(nodes) and not any(n["Node Type"] == "Sort" for n in nodes)


async def test_timeline_uses_the_fingerprint_index(plans: asyncpg.Connection) -> None:
    q = HistoryQuery(fingerprint=f"{4242:016x}", limit=None, oldest_first=True)
    nodes = await explain(plans, *q.sql())
    fp_scans = [n for n in nodes if "fingerprint" in n.get("Index Cond", "")]
    assert fp_scans, [(n["Node Type"], n.get("Index Name")) for n in nodes]
    assert not seq_scans(nodes)


def episode_index_scans(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["Index Name"] for n in nodes if n.get("Index Name", "").startswith("alert_episodes")}


@pytest.mark.parametrize("matchers", [[], ['alertname="Alert7"']])
async def test_time_travel_finds_the_episodes_by_their_slot(plans: asyncpg.Connection, matchers: list[str]) -> None:
    """The seed's rebuild (the bulk path, then ANALYZE): what was firing at a moment is read through the slot's
    btree and the open episodes' partial index, never by a scan of every episode (migration 014)."""
    at = NOW - timedelta(days=12, minutes=7)
    for sql, args in (
        firing_at_json_sql(parse_filters(matchers), at),
        history_at_sql(parse_filters(matchers), at, None, 100),
    ):
        nodes = await explain(plans, sql, args)
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n["Relation Name"] == "alert_episodes"]
        used = episode_index_scans(nodes)
        if matchers:  # the labels' GIN index alone, or with the slots (BitmapAnd): the planner's estimates decide
            assert used & {"alert_episodes_labels", "alert_episodes_slot"}, used
        else:
            assert {"alert_episodes_slot", "alert_episodes_unslotted"} <= used, used


# A day's first hours: a partition filling, its statistics never taken (autovacuum off on it, as it lags a new day).
FRESH_NOW = datetime.combine((NOW + timedelta(days=5)).date(), datetime.min.time(), UTC) + timedelta(hours=3)
FRESH_ROWS = 30_000
FILL_SQL = """
INSERT INTO {part} (id, fingerprint, status, labels, annotations, starts_at, received_at, last_seen_at, severity,
                    decision)
SELECT (1::bigint << 59) + i, lpad(to_hex(i % 5000), 16, '0'), 'firing',
       jsonb_build_object('alertname', 'Alert' || (i % 10), 'namespace', 'ns' || (i % 50),
                          'instance', 'host' || (i % 5000) || ':9100', 'severity', 'warning'),
       '{{}}', t, t, t, 'warning', 'first_seen'
FROM (SELECT i, $1::timestamptz - i * interval '200 ms' AS t FROM generate_series(1, $2) AS i) AS s
"""


async def test_a_fresh_day_is_analyzed_by_the_upkeep_and_history_walks_the_time_index(
    plans: asyncpg.Connection,
) -> None:
    await plans.execute("SELECT alert_events_ensure_partition($1)", FRESH_NOW.date())
    part = f"alert_events_{FRESH_NOW:%Y%m%d}"
    try:
        await plans.execute(f"ALTER TABLE {part} SET (autovacuum_enabled = false)")
        await plans.execute(FILL_SQL.format(part=part), FRESH_NOW, FRESH_ROWS)
        await plans.execute("SELECT pg_stat_force_next_flush()")  # the inserts counted, as a minute later
        # A label by containment (alertname="X" has its own index since migration 015, statistics or not).
        q = HistoryQuery(matchers=parse_filters(['namespace="ns7"']), since=FRESH_NOW - timedelta(hours=1),
                         until=FRESH_NOW)  # fmt: skip
        # Unanalyzed, the day looks empty: every row of the hour gathered in a bitmap, then sorted.
        assert any(n["Node Type"] == "Sort" for n in await explain(plans, *q.sql()))
        assert await analyze_filling(plans, now=FRESH_NOW) == [part]
        nodes = await explain(plans, *q.sql())
        assert scanned_partitions(nodes) == {part}
        kinds = [(n["Node Type"], n.get("Index Name", "")) for n in nodes]
        assert any(kind == "Index Scan" and "received_at" in index for kind, index in kinds), kinds
        assert not any(kind in ("Sort", "BitmapAnd") for kind, _ in kinds), kinds
        assert await analyze_filling(plans, now=FRESH_NOW) == []  # not grown since: not analyzed again
    finally:
        await plans.execute(f"DROP TABLE {part}")


async def test_regex_matcher_scans_only_the_days_in_range(plans: asyncpg.Connection) -> None:
    q = HistoryQuery(matchers=parse_filters(['namespace=~"ns1.*"']), since=NOW - timedelta(hours=24), until=NOW)
    nodes = await explain(plans, *q.sql())
    assert len(scanned_partitions(nodes)) <= 2, scanned_partitions(nodes)


async def test_resends_update_rows_in_place(plans: asyncpg.Connection) -> None:
    """A resend updates its event row (duplicates, last_seen_at) and its alerts row (last_seen_at). Both must
    be HOT updates (no new index entries), which needs no index on those columns and room in the page."""
    now_ms = int(NOW.timestamp() * 1000)  # the pipeline's times: whole milliseconds (the broker's)
    event = [
        1 << 60, "fp-hot", "firing", {"alertname": "Hot"}, {}, now_ms * 1000, None, "", now_ms, "first_seen",
        now_ms, 0, False, "warning", "other", None, None,
    ]  # fmt: skip
    alert = [
        "fp-hot", {"alertname": "Hot"}, {}, "firing", now_ms, None, "", now_ms, now_ms, 1, False, "warning", 1,
        None, None,
    ]  # fmt: skip

    async def store(offset: int, rows: BatchRows) -> None:
        stale = await plans.fetchval(_STORE_BATCH, *store_batch_args("hot-test", rows, {0: offset}, {0: offset + 1}))
        assert stale is None

    async with plans.transaction():
        await store(0, BatchRows(inserts={1 << 60: event}, alerts={"fp-hot": alert}))
        await store(1, BatchRows(counters={1 << 60: (5, now_ms + 20_000, now_ms)}, touches={"fp-hot": now_ms + 20_000}))
        # The same with the counter the row holds sent along (migration 016: checked by the UPDATE itself).
        await store(2, BatchRows(counters={1 << 60: (6, now_ms + 30_000, now_ms)}, stored={1 << 60: 5},
                                 touches={"fp-hot": now_ms + 30_000}))  # fmt: skip
        row = await plans.fetchrow("SELECT tableoid::regclass::text AS part, last_seen_at FROM alert_events"
                                   " WHERE id = $1", 1 << 60)  # fmt: skip
        hot = await plans.fetchval(
            "SELECT array[pg_stat_get_xact_tuples_hot_updated($1::regclass),"
            " pg_stat_get_xact_tuples_hot_updated('alerts'::regclass)]",
            row["part"],
        )
        await plans.execute("DELETE FROM alerts WHERE fingerprint = 'fp-hot'")
        await plans.execute("DELETE FROM alert_events WHERE id = $1", 1 << 60)
        await plans.execute("DELETE FROM sink_offsets WHERE topic = 'hot-test'")
    assert hot == [2, 2]
    assert row["last_seen_at"] == NOW.replace(microsecond=NOW.microsecond // 1000 * 1000) + timedelta(seconds=30)
