"""`alert-history seed`: a generated history loaded straight into PostgreSQL holds what the pipeline would have stored
for such a stream: alternating episodes per alert, `alerts` as each alert's newest event, and the API answering from
it as from stored events; the derivation functions the database has are called over the seeded range."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import asyncpg
import pytest

from app.seed import REBUILDS
from app.services import Endpoints
from tests.fixtures import Worker, scratch_database_url

N_EVENTS = 6_000
FINGERPRINTS = 301
DAYS = 3

# Where the database lacks a derivation function (it comes with another migration), one that records its calls.
RECORDER = """
CREATE TABLE IF NOT EXISTS rebuild_calls (fn text, p_from timestamptz, p_to timestamptz);
CREATE FUNCTION {name}(p_from timestamptz, p_to timestamptz) RETURNS void LANGUAGE sql AS
$$ INSERT INTO rebuild_calls VALUES ('{name}', p_from, p_to) $$;
"""


@dataclass
class Seeded:
    conn: asyncpg.Connection
    out: str
    recorded: list[str]  # the rebuild functions this test stood in for
    node: Worker


@pytest.fixture(scope="module")
async def seeded(endpoints: Endpoints, make_worker: Callable[..., Worker]) -> AsyncIterator[Seeded]:
    async with scratch_database_url(endpoints, "seed") as url:
        conn = await asyncpg.connect(url)
        try:
            recorded = []
            for name in REBUILDS:
                if not await conn.fetchval("SELECT to_regprocedure($1)", f"{name}(timestamptz, timestamptz)"):
                    await conn.execute(RECORDER.format(name=name))
                    recorded.append(name)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app.cli", "seed", "--events", str(N_EVENTS), "--days", str(DAYS),
                "--fingerprints", str(FINGERPRINTS), env={**os.environ, "ALERT_HISTORY_DATABASE_URL": url},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 300)
            assert proc.returncode == 0, err.decode()[-2000:]
            node = make_worker(pipeline_enabled=False, database_url=url)
            try:
                await node.wait_ready(partitions=False)
                yield Seeded(conn, out.decode(), recorded, node)
            finally:
                await asyncio.to_thread(node.stop)
        finally:
            await conn.close()


async def test_every_event_lands_in_its_day(seeded: Seeded) -> None:
    assert f"seeded {N_EVENTS:,} events over {DAYS} days" in seeded.out
    rows = await seeded.conn.fetch(
        "SELECT tableoid::regclass::text AS part, count(*) AS n, min(received_at), max(received_at) "
        "FROM alert_events GROUP BY 1"
    )
    assert sum(r["n"] for r in rows) == N_EVENTS
    assert len(rows) in (DAYS, DAYS + 1)  # the first and last days are partial
    for r in rows:
        assert r["part"] == f"alert_events_{r['min']:%Y%m%d}" == f"alert_events_{r['max']:%Y%m%d}"


async def test_each_alert_alternates_episodes_as_the_pipeline_stores_them(seeded: Seeded) -> None:
    bad = await seeded.conn.fetch(
        """SELECT * FROM (
               SELECT fingerprint, status, starts_at, ends_at, received_at, last_seen_at, decision,
                      lag(status) OVER w AS prev_status, lag(received_at) OVER w AS prev_received,
                      lead(received_at) OVER w AS next_received, row_number() OVER w AS k
               FROM alert_events WINDOW w AS (PARTITION BY fingerprint ORDER BY received_at)) AS t
           WHERE status = prev_status                                          -- a transition each time
              OR (status = 'firing' AND (starts_at <> received_at OR ends_at IS NOT NULL))
              OR (status = 'resolved' AND (ends_at <> received_at OR (k > 1 AND starts_at <> prev_received)))
              OR last_seen_at < received_at OR last_seen_at >= next_received  -- resends before the next event
              OR (decision = 'first_seen') <> (k = 1)
           LIMIT 5"""
    )
    assert not bad, [dict(r) for r in bad]
    assert await seeded.conn.fetchval("SELECT count(DISTINCT fingerprint) FROM alert_events") == FINGERPRINTS
    shares = await seeded.conn.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'firing') AS firing, count(*) FILTER (WHERE duplicates > 0) AS resent,"
        " count(DISTINCT labels->>'alertname') AS names, count(DISTINCT severity) AS severities FROM alert_events"
    )
    assert 0.4 < shares["firing"] / N_EVENTS < 0.6 and shares["resent"] > N_EVENTS / 2
    assert shares["names"] == 200 and shares["severities"] == 3


async def test_alerts_hold_each_alerts_newest_event(seeded: Seeded) -> None:
    bad = await seeded.conn.fetch(
        """WITH newest AS (SELECT DISTINCT ON (fingerprint) * FROM alert_events ORDER BY fingerprint, received_at DESC),
                episodes AS (SELECT fingerprint, count(*) FILTER (WHERE status = 'firing') AS n FROM alert_events
                             GROUP BY 1)
           SELECT a.fingerprint FROM alerts a JOIN newest e USING (fingerprint) JOIN episodes p USING (fingerprint)
           WHERE (a.status, a.starts_at, a.ends_at, a.last_seen_at, a.last_event_id, a.labels, a.severity, a.since)
                 IS DISTINCT FROM (e.status, e.starts_at, e.ends_at, e.last_seen_at, e.id, e.labels, e.severity,
                                   e.received_at)
              OR a.episodes <> p.n"""
    )
    assert not bad, bad
    assert await seeded.conn.fetchval("SELECT count(*) FROM alerts") == FINGERPRINTS


async def test_the_api_answers_from_the_seeded_history(seeded: Seeded) -> None:
    url = seeded.node.url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/history", params={"filter": 'alertname="Alert7"', "since": f"-{DAYS + 1}d",
                                                       "limit": "1000"}) as r:  # fmt: skip
            assert r.status == 200, await r.text()
            items = (await r.json())["items"]
        want = await seeded.conn.fetchval("SELECT count(*) FROM alert_events WHERE labels->>'alertname' = 'Alert7'")
        assert len(items) == want > 0
        assert [i["receivedAt"] for i in items] == sorted((i["receivedAt"] for i in items), reverse=True)
        fp = items[-1]["fingerprint"]
        async with http.get(f"{url}/alerts/{fp}/history") as r:
            assert r.status == 200, await r.text()
            timeline = await r.json()
        gap = timedelta(days=DAYS) * FINGERPRINTS / N_EVENTS
        resolved = [e for e in timeline["episodes"] if e["status"] == "resolved" and e["events"] == 2]
        assert resolved and all(abs(e["durationSeconds"] - gap.total_seconds()) < 1 for e in resolved), timeline
        async with http.get(f"{url}/api/v2/alerts") as r:
            firing = await r.json()
        assert len(firing) == await seeded.conn.fetchval("SELECT count(*) FROM alerts WHERE status = 'firing'") > 0


async def test_the_derivations_the_database_has_are_rebuilt_over_the_range(seeded: Seeded) -> None:
    assert f"rebuilt: {', '.join(REBUILDS)}" in seeded.out
    if not seeded.recorded:
        return  # every derivation is real: its own tests hold its rows to alert_events
    calls = await seeded.conn.fetch("SELECT fn, p_from, p_to FROM rebuild_calls ORDER BY fn")
    first, last = await seeded.conn.fetchrow("SELECT min(received_at), max(received_at) FROM alert_events")
    assert sorted(c["fn"] for c in calls) == sorted(seeded.recorded)
    assert all(c["p_from"] <= first and c["p_to"] > last for c in calls), (calls, first, last)
