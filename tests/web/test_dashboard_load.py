"""The dashboard on a million stored events (app/seed.py, 30 days): it loads and shows /report's numbers for its range.
The load time is measured with the browser's own timing (Navigation Timing and the page's `dashboard-ready` mark)
and printed, never asserted (timings belong to `make bench` and docs/performance.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiohttp
import pytest

from app.seed import seed_events
from app.services import Endpoints
from tests.fixtures import Worker, scratch_database
from tests.web.browser import chromium, tab

N_EVENTS = 1_000_000
LOADS = 4  # the first on a cold node, then reloads


@pytest.fixture(scope="module")
async def node(endpoints: Endpoints, make_worker: Callable[..., Worker]) -> AsyncIterator[Worker]:
    async with scratch_database(endpoints, "million") as conn:
        await seed_events(conn, N_EVENTS, days=30, now=datetime.now(UTC))
        url = endpoints.database_url.rsplit("/", 1)[0] + "/" + await conn.fetchval("SELECT current_database()")
        worker = make_worker(pipeline_enabled=False, database_url=url)
        try:
            await worker.wait_ready(partitions=False)
            yield worker
        finally:
            await asyncio.to_thread(worker.stop)


async def test_the_dashboard_loads_on_a_million_events(node: Worker, http: aiohttp.ClientSession) -> None:
    timings = []
    async with chromium() as browser:
        for _ in range(LOADS):
            async with tab(browser, f"{node.url}/") as t:
                await t.wait_view(1, timeout_ms=60_000)
                await t.page.wait_for_selector('#live[data-state="live"]')
                timings.append(await t.page.evaluate("""() => {
                    const nav = performance.getEntriesByType("navigation")[0];
                    const report = performance.getEntriesByType("resource").find((r) => r.name.includes("/report?"));
                    return {ready: window.__dashboard.loadMs, report: Math.round(report.duration),
                            domContentLoaded: Math.round(nav.domContentLoadedEventEnd)};
                }"""))  # fmt: skip
                report = await t.json_of("/report")
                total = await t.page.get_attribute('[data-stat="total_events"]', "data-exact")
                rows = await t.page.locator("#events tbody tr.event").count()
                assert t.console_errors() == []
    assert total == str(report["total_events"]) and report["total_events"] > 30_000, report["total_events"]
    params = {"since": report["since"], "until": report["until"], "top": "10", "bucket": "1h"}
    async with http.get(f"{node.url}/report", params=params) as r:
        assert await r.json() == report
    assert rows == 200
    print(f"dashboard on {N_EVENTS:,} events ({report['total_events']:,} in its 24 h): ready (ms) "
          f"{[t['ready'] for t in timings]}, DOMContentLoaded {[t['domContentLoaded'] for t in timings]}, "
          f"/report {[t['report'] for t in timings]}")  # fmt: skip
