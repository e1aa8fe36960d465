"""Time travel: what was firing at a moment, from history, on /api/v2/alerts?at=, under /at/<time>/ for amtool
(unmodified) and on /history?at=. The alerts are sent now with times of the past, as a backfill would be."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.fingerprint import fingerprint
from tests.fixtures import Worker, eventually, unique


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def base() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


async def _seed(http, worker: Worker, base: datetime, run: str) -> dict[str, str]:
    """Three alerts' episodes (minutes from base): a [0, 30), b [10, open: ends in the future), c [40, 50)."""
    spans = {"a": (0, 30, "critical"), "b": (10, None, "critical"), "c": (40, 50, "warning")}
    body: list[dict[str, Any]] = []
    for name, (start, end, severity) in spans.items():
        ends = datetime.now(UTC) + timedelta(hours=1) if end is None else base + timedelta(minutes=end)
        body.append(
            {
                "labels": {"alertname": "TimeTravel", "run": run, "name": name, "severity": severity},
                "annotations": {"summary": f"episode of {name}"},
                "startsAt": _iso(base + timedelta(minutes=start)),
                "endsAt": _iso(ends),  # in the past: Alertmanager's rule makes it a resolve
                "generatorURL": "http://prometheus:9090/graph",
            }
        )
    async with http.post(f"{worker.url}/api/v2/alerts", json=body) as r:
        assert r.status == 200, await r.text()
    fps = {a["labels"]["name"]: fingerprint(a["labels"]) for a in body}

    async def stored() -> bool:
        async with http.get(
            f"{worker.url}/api/v2/alerts", params={"at": _iso(base + timedelta(minutes=45)), "filter": f'run="{run}"'}
        ) as r:
            return len(await r.json()) == 2

    await eventually(stored, what="the episodes stored")
    return fps


async def _get(http, url: str, **params: str) -> tuple[int, Any]:
    async with http.get(url, params=params) as r:
        return r.status, await r.json()


async def test_alerts_at_a_moment_answer_what_was_firing_then(worker: Worker, http, base: datetime) -> None:
    run = unique()
    fps = await _seed(http, worker, base, run)
    run_filter = f'run="{run}"'
    for minute, firing in ((-1, set()), (0, {"a"}), (20, {"a", "b"}), (30, {"b"}), (45, {"b", "c"}), (50, {"b"})):
        at = _iso(base + timedelta(minutes=minute))
        status, alerts = await _get(http, f"{worker.url}/api/v2/alerts", at=at, filter=run_filter)
        assert status == 200, alerts
        assert {a["fingerprint"] for a in alerts} == {fps[n] for n in firing}, minute
        status, same = await _get(http, f"{worker.url}/at/{at}/api/v2/alerts", filter=run_filter)
        assert (status, same) == (200, alerts), minute
        # PostgreSQL writes the answer; with a receiver regex Python filters and writes it: the two agree.
        status, same = await _get(http, f"{worker.url}/api/v2/alerts", at=at, filter=run_filter, receiver=".*")
        assert (status, same) == (200, alerts), minute

    at = _iso(base + timedelta(minutes=45))
    _, alerts = await _get(http, f"{worker.url}/api/v2/alerts", at=at, filter=f'{{run="{run}",severity="warning"}}')
    assert [(a["fingerprint"], a["labels"]["name"]) for a in alerts] == [(fps["c"], "c")]
    alert = alerts[0]
    assert alert["startsAt"] == _iso(base + timedelta(minutes=40)).replace("Z", ".000Z")
    assert alert["endsAt"] == _iso(base + timedelta(minutes=50)).replace("Z", ".000Z")
    assert alert["annotations"] == {"summary": "episode of c"}
    assert alert["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}
    at = _iso(base + timedelta(minutes=20))
    _, regex = await _get(http, f"{worker.url}/api/v2/alerts", at=at, filter=f'{{run="{run}",name=~"[bc]"}}')
    assert [a["labels"]["name"] for a in regex] == ["b"]
    _, none = await _get(http, f"{worker.url}/api/v2/alerts", at=at, filter=run_filter, active="false")
    assert none == []

    at = _iso(base + timedelta(minutes=45))
    # /history?at=: for each alert firing then, the event that opened its episode, in /history's shape.
    status, page = await _get(http, f"{worker.url}/history", at=at, filter=run_filter)
    assert status == 200, page
    assert {e["fingerprint"] for e in page["items"]} == {fps["b"], fps["c"]}
    assert all({"id", "labels", "startsAt", "receivedAt", "classification"} <= e.keys() for e in page["items"])
    status, first = await _get(http, f"{worker.url}/history", at=at, filter=run_filter, limit="1")
    assert status == 200 and len(first["items"]) == 1 and first["next"]
    _, rest = await _get(http, f"{worker.url}/history", at=at, filter=run_filter, limit="1", cursor=first["next"])
    assert [e["fingerprint"] for e in first["items"] + rest["items"]] == [e["fingerprint"] for e in page["items"]]


async def test_a_bad_moment_is_a_400_naming_at(worker: Worker, http) -> None:
    for params in ({"at": "yesterday"}, {"at": "2026-11-20T10:00:00"}, {"at": "2026-13-01T00:00:00Z"}):
        status, body = await _get(http, f"{worker.url}/api/v2/alerts", **params)
        assert status == 400 and body["error"].startswith("at: "), (params, body)
        status, body = await _get(http, f"{worker.url}/history", **params)
        assert status == 400 and body["error"].startswith("at: "), (params, body)
    status, body = await _get(http, f"{worker.url}/history", at="2026-11-20T10:00:00Z", since="-1h")
    assert status == 400 and body["error"].startswith("at: "), body
    # Under the prefix, as Alertmanager's v2 API answers a 400: the body is a JSON string.
    for path in ("/at/yesterday/api/v2/alerts", "/at/2026-11-20T10:00:00/api/v2/status"):
        status, body = await _get(http, f"{worker.url}{path}")
        assert status == 400 and isinstance(body, str) and body.startswith("at: "), (path, body)
    status, body = await _get(http, f"{worker.url}/at/2026-11-20T10:00:00Z/api/v2/alerts", filter="run=~(")
    assert status == 400 and isinstance(body, str) and body.startswith("filter: "), body
    status, body = await _get(http, f"{worker.url}/at/2026-11-20T10:00:00Z/api/v2/status")
    assert status == 200 and "versionInfo" in body


async def _amtool(url: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "amtool", "alert", "query", f"--alertmanager.url={url}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_amtool_travels_in_time_unmodified(worker: Worker, http, base: datetime) -> None:
    run = unique()
    fps = await _seed(http, worker, base, run)
    url = f"{worker.url}/at/{_iso(base + timedelta(minutes=20))}"
    alerts = json.loads(await _amtool(url, "-o", "json", f"run={run}"))
    assert {a["fingerprint"] for a in alerts} == {fps["a"], fps["b"]}
    table = await _amtool(url, f"run={run}", "name=~[ab]", "severity=critical")
    assert table.count("TimeTravel") == 2 and "episode of a" in table and "episode of b" in table
    later = f"{worker.url}/at/{_iso(base + timedelta(minutes=45))}"
    alerts = json.loads(await _amtool(later, "-o", "json", f"run={run}", "severity!=critical"))
    assert [a["fingerprint"] for a in alerts] == [fps["c"]]
