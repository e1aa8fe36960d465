"""The dashboard in headless Chromium (Debian's, driven by Playwright), on a seeded history and a live pipeline: it
loads with no console error and shows /report's and /history's numbers; events posted appear live; a matcher narrows
the list; an alert's timeline; what was firing at a moment; the read token asked for and never put in a URL. A
screenshot of each view goes to docs/ (checked not to be blank)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser

from app.events import rfc3339
from app.fingerprint import fingerprint
from app.services import Endpoints
from tests.fixtures import REPO, Worker, eventually, scratch_database_url, unique
from tests.web.browser import Tab, chromium, screenshot, tab
from tests.web.demo_history import seed_demo
from tests.web.test_webhook import am_alert, webhook

API = "dash-api-token-" + "a" * 16
READ = "dash-read-token-" + "r" * 16
DOCS = REPO / "docs"
NOW = datetime.now(UTC)
UNAUTHORIZED = r"status of 401"  # Chromium logs each refused fetch; the token test expects them


@dataclass
class Site:
    node: Worker  # a worker (pipeline + web) with the write token set: reads open
    reader: Worker  # a web node on the same database and topic with a read token

    async def post(self, http: aiohttp.ClientSession, alerts: list[dict[str, Any]], status: str = "firing") -> None:
        headers = {"Authorization": f"Bearer {API}"}
        async with http.post(f"{self.node.url}/webhook", json=webhook(alerts, status), headers=headers) as r:
            assert r.status == 202, await r.text()

    async def get(self, http: aiohttp.ClientSession, path: str, **params: str) -> Any:
        async with http.get(f"{self.node.url}{path}", params=params) as r:
            assert r.status == 200, await r.text()
            return await r.json()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture(scope="module")
async def site(endpoints: Endpoints, make_worker: Callable[..., Worker]) -> AsyncIterator[Site]:
    async with scratch_database_url(endpoints, "dashboard") as url:
        conn = await asyncpg.connect(url)
        try:
            await seed_demo(conn, NOW, days=2)
        finally:
            await conn.close()
        node = make_worker(database_url=url, api_token=API)
        reader = make_worker(database_url=url, pipeline_enabled=False, read_token=READ, topic=node.topic)
        try:
            await asyncio.gather(node.wait_ready(), reader.wait_ready(partitions=False))
            yield Site(node, reader)
        finally:
            await asyncio.gather(asyncio.to_thread(node.stop), asyncio.to_thread(reader.stop))


async def ready(t: Tab, view: int = 1) -> None:
    await t.wait_view(view)
    assert await t.page.get_attribute("body", "data-ready") == "true"


async def test_the_overview_loads_with_no_console_error_and_shows_report_and_history_exactly(
    browser: Browser, site: Site, http: aiohttp.ClientSession
) -> None:
    async with tab(browser, f"{site.node.url}/") as t:
        await ready(t)
        await t.page.wait_for_selector('#live[data-state="live"]')
        page = t.page
        assert not await page.is_visible("#token-dialog"), "reads are open with only the write token set"
        report = await t.json_of("/report")
        # The page's /report is the API's answer for that range, and the page shows its numbers as they are.
        assert report == await site.get(http, "/report", since=report["since"], until=report["until"], top="10",
                                        bucket="1h")  # fmt: skip
        shown = {k: await page.get_attribute(f'[data-stat="{k}"]', "data-exact") for k in
                 ("total_events", "unique_alerts", "duplicates_suppressed", "flapping_events", "episodes")}  # fmt: skip
        assert shown == {
            "total_events": str(report["total_events"]), "unique_alerts": str(report["unique_alerts"]),
            "duplicates_suppressed": str(report["duplicates_suppressed"]),
            "flapping_events": str(report["flapping_events"]), "episodes": str(report["mttr_seconds"]["episodes"]),
        }  # fmt: skip
        assert report["total_events"] > 100 and report["flapping_alerts"] and report["mttr_seconds"]["by_alertname"]
        bars = await page.locator("#chart-status svg g.bucket rect:not(.hover)").count()
        assert bars == sum(1 for b in report["buckets"] for n in b["by_status"].values() if n)
        noisy = await page.locator("#noisy .row .name").all_inner_texts()
        assert noisy == [a["alertname"] for a in report["top_alerts"]]
        assert await page.locator("#mttr .row").count() == len(report["mttr_seconds"]["by_alertname"])
        # The events table is /history's page, newest first.
        history = await t.json_of("/history")
        ids = await page.locator("#events tbody tr.event").evaluate_all("rows => rows.map(r => r.dataset.id)")
        assert ids == [e["id"] for e in history["items"]] and len(ids) == 200
        load_ms = await page.evaluate("() => window.__dashboard.loadMs")
        print(f"dashboard overview ready in {load_ms} ms (seeded history of {report['total_events']} events in 24 h)")
        await screenshot(browser, page, DOCS / "dashboard-overview.png")
        assert t.console_errors() == []


async def test_events_posted_appear_live_and_typing_a_matcher_narrows_the_list(
    browser: Browser, site: Site, http: aiohttp.ClientSession
) -> None:
    run = unique("Live")
    disk = {"alertname": "DiskWillFillIn4Hours", "severity": "critical", "namespace": "payments", "run": run,
            "instance": "pay-db-1.prod:9100"}  # fmt: skip
    probe = {"alertname": "BlackboxProbeFailed", "severity": "warning", "namespace": "checkout", "run": run,
             "instance": "https://checkout.example/health"}  # fmt: skip
    async with tab(browser, f"{site.node.url}/") as t:
        await ready(t)
        page = t.page
        await page.wait_for_selector('#live[data-state="live"]')
        started = rfc3339(datetime.now(UTC) - timedelta(minutes=12))
        await site.post(http, [am_alert(disk, starts=started), am_alert(probe, starts=started)])
        for labels in (disk, probe):  # live: no reload, the rows arrive from /events
            await page.wait_for_selector(f'#events tr.event.live[data-fingerprint="{fingerprint(labels)}"]')
        assert await page.locator("#events tbody tr.event").count() > 2

        views = await t.views()
        await page.fill("#filter", f'run="{run}", alertname="DiskWillFillIn4Hours"')
        await t.wait_view(views + 1)
        await page.wait_for_selector('#live[data-state="live"]')
        rows = page.locator("#events tbody tr.event")
        assert await rows.evaluate_all("rows => rows.map(r => r.dataset.fingerprint)") == [fingerprint(disk)]
        assert "filter=run" in page.url, "the filter is in the address, to share or reload"

        # Live events keep coming, filtered: the resolve of the one shown, not the other alert's.
        ends = rfc3339(datetime.now(UTC))
        resolved = [am_alert(labels, status="resolved", starts=started, ends=ends) for labels in (disk, probe)]
        await site.post(http, resolved, "resolved")
        await page.wait_for_selector("#events tbody tr.event.live .st-resolved")
        await page.wait_for_timeout(500)
        statuses = await rows.evaluate_all("rows => rows.map(r => [r.dataset.fingerprint, r.cells[1].innerText])")
        assert statuses == [[fingerprint(disk), "resolved"], [fingerprint(disk), "firing"]]
        # The charts follow the filter and the live events (the report is read again a few seconds after them).
        await page.wait_for_selector('[data-stat="total_events"][data-exact="2"]', state="attached")
        await screenshot(browser, page, DOCS / "dashboard-live-filtered.png")
        assert t.console_errors() == []


async def test_a_bad_matcher_is_shown_with_the_server_s_reason(browser: Browser, site: Site) -> None:
    async with tab(browser, f"{site.node.url}/") as t:
        await ready(t)
        await t.page.fill("#filter", 'alertname=~"("')
        await t.wait_view(2)
        assert "filter: bad matcher" in await t.page.inner_text("#error")
        assert await t.page.get_attribute("#filter", "class") == "invalid"
        assert t.console_errors([r"status of 400"]) == []


async def test_clicking_an_alert_shows_its_timeline_with_episodes_and_classifications(
    browser: Browser, site: Site, http: aiohttp.ClientSession
) -> None:
    async with tab(browser, f"{site.node.url}/") as t:
        await ready(t)
        page = t.page
        first = page.locator("#noisy a.label").first
        name = await first.locator(".name").inner_text()
        await first.click()
        await t.wait_view(2)
        assert await page.get_attribute("body", "data-view") == "timeline"
        fp = page.url.rsplit("/", 1)[1].split("?")[0]
        timeline = await site.get(http, f"/alerts/{fp}/history")
        assert await page.inner_text("#tl-title") == name == timeline["labels"]["alertname"]
        assert await page.locator("svg.timeline rect.episode").count() == len(timeline["episodes"]) > 1
        assert await page.locator("svg.timeline rect.tick").count() == len(timeline["items"])
        rows = page.locator("#tl-events tbody tr")
        assert await rows.evaluate_all("rows => rows.map(r => r.dataset.id)") == [
            e["id"] for e in reversed(timeline["items"])
        ]
        unclassified = sum(1 for e in timeline["items"] if e["classification"] is None)
        assert await page.locator("#tl-events .unclassified").count() == unclassified
        assert 0 < unclassified < len(timeline["items"]), "the seed classifies some events and not others"
        categories = await page.locator("#tl-events .classification").all_inner_texts()
        assert all(c["category"] in text for c, text in zip(
            [e["classification"] for e in reversed(timeline["items"]) if e["classification"]], categories, strict=True
        ))  # fmt: skip
        await screenshot(browser, page, DOCS / "dashboard-timeline.png")
        assert t.console_errors() == []


async def test_the_time_picker_shows_what_was_firing_then(
    browser: Browser, site: Site, http: aiohttp.ClientSession
) -> None:
    run = unique("At")
    started = rfc3339(datetime.now(UTC) - timedelta(minutes=20))
    firing = {"alertname": "KubeNodeNotReady", "severity": "critical", "node": "worker-7", "run": run}
    over = {"alertname": "KubeNodeNotReady", "severity": "critical", "node": "worker-3", "run": run}
    await site.post(http, [am_alert(firing, starts=started), am_alert(over, starts=started)])
    await site.post(http, [am_alert(over, status="resolved", starts=started, ends=rfc3339(datetime.now(UTC)))],
                    "resolved")  # fmt: skip

    async def stored() -> bool:
        page = await site.get(http, "/history", filter=f'run="{run}"')
        return len(page["items"]) == 3

    await eventually(stored, what="the alerts of the time picker's test stored")
    await asyncio.sleep(1)  # the moment asked for is after they were received
    at = datetime.now(UTC).replace(microsecond=0)
    async with tab(browser, f"{site.node.url}/") as t:
        await ready(t)
        page = t.page
        await page.fill("#at", at.strftime("%Y-%m-%dT%H:%M:%S"))
        await page.click("#at-form button")
        await t.wait_view(2)
        assert await page.get_attribute("body", "data-view") == "at"
        assert at.strftime("%Y-%m-%d %H:%M:%S") in await page.inner_text("#at-title")
        shown = await page.locator("#at-alerts tbody tr.event").evaluate_all(
            "rows => rows.map(r => r.dataset.fingerprint)"
        )
        assert fingerprint(firing) in shown and fingerprint(over) not in shown
        assert "time-travel" in await page.inner_text("#at-source")  # which source answered, the API or /history
        await screenshot(browser, page, DOCS / "dashboard-firing-at.png")
        assert t.console_errors() == []


async def test_with_a_read_token_the_page_asks_for_it_and_never_puts_it_in_a_url(
    browser: Browser, site: Site, http: aiohttp.ClientSession
) -> None:
    async with tab(browser, f"{site.reader.url}/") as t:
        page = t.page
        await page.wait_for_selector("#token-dialog[open]")
        await screenshot(browser, page, DOCS / "dashboard-token.png")
        await page.fill("#token-input", READ)
        await page.press("#token-input", "Enter")
        await ready(t)
        await page.wait_for_selector('#live[data-state="live"]')
        assert await page.locator("#events tbody tr.event").count() == 200
        run = unique("Read")
        labels = {"alertname": "TokenLive", "severity": "info", "run": run}
        await site.post(http, [am_alert(labels)])  # through the worker; the reader node streams it from the topic
        await page.wait_for_selector(f'#events tr.event.live[data-fingerprint="{fingerprint(labels)}"]')
        streams = [r for r in t.requests if "/events" in r.url]
        assert streams and all(r.headers.get("authorization") == f"Bearer {READ}" for r in streams[-1:])
        assert not [r.url for r in t.requests if READ in r.url], "the token never goes in a URL"
        assert await page.evaluate("() => sessionStorage.getItem('alert-history.read-token')") == READ
        await page.reload()  # kept for the tab: no second prompt
        await ready(t)
        assert not await page.is_visible("#token-dialog")
        assert t.console_errors([UNAUTHORIZED]) == []
