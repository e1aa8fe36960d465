"""/report from the rollups equals the raw scan (web/queries.ReportQuery, the reference) on generated histories.

Each history goes through the real store function (the sink's one call per batch) in batches: new rows, and the
resend counters of rows stored in earlier batches (so resends after midnight count onto a row of the day before),
episodes firing one day and resolved the next, resolves seen again (stored anew, the same episode), and then
retention dropping the oldest days. Every report field must be equal; MTTR p50/p90 within the histogram's bound.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.retention import upkeep
from app.services import Endpoints
from sinks.postgres import _STORE_BATCH, BatchRows, _us, store_batch_args
from tests.fixtures import scratch_database_url, truncate_history
from web import report_rollup
from web.queries import BUCKETS, ReportQuery

EXAMPLES = int(os.environ.get("ALERT_HISTORY_ROLLUP_EXAMPLES", "25"))
CI = os.environ.get("CI") == "true"
BASE = datetime(2026, 11, 20, tzinfo=UTC)
DAYS = 4
MS = 1000
DAY_MS = 86_400_000


@pytest.fixture
async def pool(endpoints: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    async with scratch_database_url(endpoints, "rollup") as url:
        from sinks.postgres import open_pool

        p = await open_pool(url, 2)
        try:
            yield p
        finally:
            await p.close()


# One generated event: (alert 0 to 5, day, ms into the day, status, episode 0 to 2, duration s or None, flapping,
# resends counted on arrival, resends counted later, its resolve seen again after this many ms or None).
events = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.integers(0, DAYS - 1),
        st.one_of(st.integers(0, DAY_MS - 1), st.sampled_from([0, 1, DAY_MS - 1, 3_600_000, 3_599_999])),
        st.sampled_from(["firing", "resolved"]),
        st.integers(0, 2),
        st.one_of(st.none(), st.integers(0, 3 * 86_400), st.floats(0, 5, allow_nan=False).map(lambda f: round(f, 3))),
        st.booleans(),
        st.integers(0, 3),
        st.integers(0, 4),
        st.one_of(st.none(), st.integers(1, 2 * DAY_MS)),
    ),
    min_size=1,
    max_size=40,
)
moments = st.integers(-DAY_MS, (DAYS + 1) * DAY_MS).map(lambda ms: BASE + timedelta(milliseconds=ms))
aligned = st.integers(-2, DAYS + 1).map(lambda d: BASE + timedelta(days=d))
ranges = st.lists(st.tuples(st.one_of(moments, aligned), st.one_of(moments, aligned)), min_size=1, max_size=4)


def _history(generated: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows in receipt order, each with its id, its row for the store function, and its later resend count."""
    rows: list[dict[str, Any]] = []
    used: set[int] = set()
    for alert, day, ms, status, episode, duration, flapping, dups, later, again in generated:
        received = DAY_MS * ((BASE - datetime(1970, 1, 1, tzinfo=UTC)).days + day) + ms
        while received in used:  # one row a millisecond: the receipt order is the store order
            received += 1
        used.add(received)
        starts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=received) - timedelta(hours=episode * 7)
        ends = None if duration is None else starts + timedelta(seconds=duration)
        copies = [received]
        if status == "resolved" and again is not None and received + again not in used:
            copies.append(received + again)  # the same episode's resolve, stored anew after silence
            used.add(received + again)
        for r in copies:
            rows.append(
                {"alert": alert, "received": r, "dups": dups, "later": later,
                 "row": [0, f"fp{alert}", status, {"alertname": f"A{alert % 3}", "i": str(alert)},
                         {}, _us(starts), _us(ends), "", r, "first_seen", r, dups, flapping, ["critical",
                         "warning", "info"][alert % 3], None, None]}
            )  # fmt: skip
    rows.sort(key=lambda r: r["received"])
    for i, r in enumerate(rows):
        r["id"] = i + 1
        r["row"][0] = i + 1
    return rows


def _stored(previous: list[dict[str, Any]]) -> dict[int, int]:
    """What the sink says each resent row held before the batch (migration 016): the truth for most, a wrong
    value for every third (a state that does not match the row: the store must read the row instead), nothing for
    every fourth."""
    return {r["id"]: r["dups"] + (r["id"] % 3 == 0) for r in previous if r["later"] and r["id"] % 4 != 1}


async def _store(conn: asyncpg.Connection, rows: list[dict[str, Any]], cuts: list[int]) -> None:
    """Batches cut at `cuts`; each batch also carries the later resends of the batch before it."""
    for k in range(DAYS + 5):
        await conn.execute("SELECT alert_events_ensure_partition($1)", (BASE + timedelta(days=k - 1)).date())
    bounds = sorted({0, len(rows), *(c % (len(rows) + 1) for c in cuts)})
    previous: list[dict[str, Any]] = []
    for n, (a, b) in enumerate(itertools.pairwise(bounds)):
        batch = BatchRows(
            inserts={r["id"]: r["row"] for r in rows[a:b]},
            counters={r["id"]: (r["dups"] + r["later"], r["received"] + 1, r["received"]) for r in previous
                      if r["later"]},
            stored=_stored(previous),
        )  # fmt: skip
        assert await conn.fetchval(_STORE_BATCH, *store_batch_args("t", batch, {0: n}, {0: n + 1})) is None
        previous = rows[a:b]
    if previous:  # the last batch's resends, in a batch of their own
        batch = BatchRows(counters={r["id"]: (r["dups"] + r["later"], r["received"] + 1, r["received"])
                                    for r in previous if r["later"]}, stored=_stored(previous))  # fmt: skip
        n = len(bounds) - 1
        assert await conn.fetchval(_STORE_BATCH, *store_batch_args("t", batch, {0: n}, {0: n + 1})) is None


def _close(rollup: float | None, raw: float | None) -> bool:
    if rollup is None or raw is None:
        return rollup is raw
    return abs(rollup - raw) <= raw * report_rollup.MTTR_RELATIVE_ERROR + 0.002  # and the answers' rounding


def assert_same(rollup: dict[str, Any], raw: dict[str, Any]) -> None:
    r_mttr, e_mttr = rollup.pop("mttr_seconds"), raw.pop("mttr_seconds")
    assert rollup == raw
    assert r_mttr["episodes"] == e_mttr["episodes"]
    assert _close(r_mttr["overall"], e_mttr["overall"]), (r_mttr, e_mttr)
    for q in ("p50", "p90"):
        assert _close(r_mttr[q], e_mttr[q]), (q, r_mttr, e_mttr)
    assert [a["alertname"] for a in r_mttr["by_alertname"]] == [a["alertname"] for a in e_mttr["by_alertname"]]
    for a, e in zip(r_mttr["by_alertname"], e_mttr["by_alertname"], strict=True):
        assert a["episodes"] == e["episodes"]
        assert abs(a["mttr_seconds"] - e["mttr_seconds"]) <= 0.002, (a, e)
        for q in ("p50_seconds", "p90_seconds"):
            assert _close(a[q], e[q]), (q, a, e)


@pytest.mark.slow
@pytest.mark.timeout(max(300, EXAMPLES * 20))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,
    phases=[Phase.explicit, Phase.reuse, Phase.generate] if CI else list(Phase),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
@given(
    generated=events,
    cuts=st.lists(st.integers(0, 80), max_size=6),
    checks=ranges,
    top=st.integers(1, 4),
    bucket=st.sampled_from(sorted(BUCKETS)),
    retention=st.one_of(st.none(), st.integers(1, DAYS)),
)
async def test_report_from_rollups_equals_the_raw_scan(  # type: ignore[no-untyped-def]
    pool, generated, cuts, checks, top, bucket, retention
) -> None:
    async with pool.acquire() as conn:
        await truncate_history(conn)
        rows = _history(generated)
        await _store(conn, rows, cuts)
    if retention is not None:  # the upkeep as it runs: days wholly older than the retention dropped
        await upkeep(pool, retention, now=BASE + timedelta(days=DAYS - 1, hours=12))
    async with pool.acquire() as conn:
        # The whole range, and generated ones (the rollups' cut into days, hours and raw rows varies with them).
        # Two with partial days mostly inside the range, read as their day rows less the rest of the day.
        mostly = [(BASE + timedelta(days=1, hours=2), BASE + timedelta(days=2, hours=22)),
                  (BASE + timedelta(days=1, hours=1, seconds=7), BASE + timedelta(days=1, hours=23))]  # fmt: skip
        for since, until in [(BASE - timedelta(days=2), BASE + timedelta(days=DAYS + 1)), *mostly, *checks]:
            q = ReportQuery(since=since, until=until, top=top, bucket=BUCKETS[bucket])
            assert_same(await report_rollup.run(q, conn), await q.run(conn))


async def test_rebuild_derives_what_the_sink_kept(pool: asyncpg.Pool) -> None:  # type: ignore[no-untyped-def]
    """The backfill (alert_history_rollups_rebuild) gives the rollups the sink built, whatever range it is given."""
    generated = [
        (a, d, (a * 7_919_000 + d * 3_600_000) % DAY_MS, "resolved" if (a + d) % 2 else "firing", a % 3,
         a * 100 + d, a == 1, a, d, DAY_MS // 2 if a == 2 else None)
        for a in range(6) for d in range(DAYS)
    ]  # fmt: skip
    tables = ("report_counts", "report_counts_minute", "report_alert_periods", "report_alert_totals", "report_episodes",
              "report_resolve_repeats", "report_mttr_periods", "report_mttr_totals")  # fmt: skip
    async with pool.acquire() as conn:
        await truncate_history(conn)
        await _store(conn, _history(generated), [5, 11, 30, 31])

        async def snapshot() -> dict[str, list[asyncpg.Record]]:
            return {t: await conn.fetch(f"SELECT * FROM {t} ORDER BY 1, 2, 3") for t in tables}

        kept = await snapshot()
        assert kept["report_resolve_repeats"] and kept["report_episodes"]
        await conn.execute("SELECT alert_history_rollups_rebuild($1, $2)", BASE, BASE + timedelta(days=DAYS))
        assert await snapshot() == kept
        for t in tables:
            await conn.execute(f"TRUNCATE {t}")
        for d in range(DAYS):  # day by day, and the second time changes nothing
            for _ in range(2):
                await conn.execute(
                    "SELECT alert_history_rollups_rebuild($1, $2)",
                    BASE + timedelta(days=d, hours=3),
                    BASE + timedelta(days=d, hours=5),
                )
        assert await snapshot() == kept
        q = ReportQuery(since=BASE, until=BASE + timedelta(days=DAYS), top=3)
        assert_same(await report_rollup.run(q, conn), await q.run(conn))
