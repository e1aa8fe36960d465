"""GET /report and the per-alert timeline's episodes, on events sent through the real pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.fingerprint import fingerprint
from tests.fixtures import Worker, eventually, unique
from tests.web.test_webhook import am_alert, webhook

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def _send(http, worker: Worker, *alerts: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    async with http.post(f"{worker.url}/webhook", json=webhook(list(alerts))) as r:
        assert r.status == 202, await r.text()


async def _seed(http, worker: Worker, run: str) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    labels = {
        name: {"alertname": name, "run": run, "severity": sev}
        for name, sev in (("Noisy", "warning"), ("Flappy", "critical"), ("Quick", "info"))
    }
    for _ in range(6):  # one event, five resends
        await _send(http, worker, am_alert(labels["Noisy"], starts=_at(0)))
    # Two short episodes back to back: four transitions, the fourth makes it flapping (threshold 4).
    await _send(http, worker, am_alert(labels["Flappy"], starts=_at(0)))
    await _send(http, worker, am_alert(labels["Flappy"], "resolved", starts=_at(0), ends=_at(1)))
    await _send(http, worker, am_alert(labels["Flappy"], starts=_at(5)))
    await _send(http, worker, am_alert(labels["Flappy"], "resolved", starts=_at(5), ends=_at(7)))
    await _send(http, worker, am_alert(labels["Quick"], starts=_at(0)))
    await _send(http, worker, am_alert(labels["Quick"], "resolved", starts=_at(0), ends=_at(5)))
    return labels


async def _report(http, worker: Worker, **params: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async with http.get(f"{worker.url}/report", params=params) as r:
        body = await r.json()
        assert r.status == 200, body
        return body  # type: ignore[no-any-return]


async def test_report_totals_rankings_mttr_and_buckets(worker: Worker, http) -> None:
    run = unique()
    labels = await _seed(http, worker, run)

    async def complete() -> dict[str, Any] | None:
        rep = await _report(http, worker, filter=f'run="{run}"', since="-1h", bucket="1d")
        done = rep["total_events"] == 7 and rep["duplicates_suppressed"] == 5
        return rep if done else None

    rep = await eventually(complete, what="the seeded events in the report")
    assert rep["source"] == "events"  # a filter: the rollups hold no labels
    assert rep["unique_alerts"] == 3
    assert rep["flapping_events"] == 1
    top = rep["top_alerts"]
    assert [a["alertname"] for a in top] == ["Noisy", "Flappy", "Quick"]
    assert top[0] | {"labels": None, "lastReceivedAt": None} == {
        "fingerprint": fingerprint(labels["Noisy"]), "alertname": "Noisy", "labels": None, "events": 1,
        "duplicates": 5, "notifications": 6, "flapping_events": 0, "lastReceivedAt": None,
    }  # fmt: skip
    assert [(a["alertname"], a["transitions"], a["flapping_events"]) for a in rep["flapping_alerts"]] == [
        ("Flappy", 4, 1)
    ]

    mttr = rep["mttr_seconds"]
    assert mttr["episodes"] == 3
    assert mttr["overall"] == (60 + 120 + 300) / 3
    assert mttr["p50"] == 120
    by_name = {m["alertname"]: m for m in mttr["by_alertname"]}
    assert by_name["Flappy"]["mttr_seconds"] == 90 and by_name["Flappy"]["episodes"] == 2
    assert by_name["Quick"]["mttr_seconds"] == 300 and by_name["Quick"]["episodes"] == 1
    assert "Noisy" not in by_name  # never resolved: no episode to measure

    assert rep["bucket_seconds"] == 86400
    assert sum(b["total"] for b in rep["buckets"]) == 7
    assert sum(b["by_status"].get("firing", 0) for b in rep["buckets"]) == 4
    assert sum(b["by_severity"].get("critical", 0) for b in rep["buckets"]) == 4

    # top= bounds every ranking; a filter narrows everything.
    small = await _report(http, worker, filter=f'run="{run}"', since="-1h", top="1")
    assert [a["alertname"] for a in small["top_alerts"]] == ["Noisy"]
    only = await _report(http, worker, filter=f'{{run="{run}",alertname=~"Q.*"}}', since="-1h")
    assert (only["total_events"], only["unique_alerts"], only["mttr_seconds"]["overall"]) == (2, 1, 300)
    # Without a filter the rollups answer (tests/web/test_report_rollup.py holds them to the raw scan).
    everything = await _report(http, worker, since="-1h")
    assert everything["source"] == "rollup" and everything["total_events"] >= 7
    # Nothing in an old range.
    empty = await _report(
        http, worker, filter=f'run="{run}"', since="2001-01-01T00:00:00Z", until="2001-01-02T00:00:00Z"
    )
    assert (empty["total_events"], empty["top_alerts"], empty["mttr_seconds"]["overall"]) == (0, [], None)

    # The timeline of the flapping alert, oldest first, with its two episodes.
    async with http.get(f"{worker.url}/alerts/{fingerprint(labels['Flappy'])}/history") as r:
        timeline = await r.json()
    assert [(e["status"], e["flapping"]) for e in timeline["items"]] == [
        ("firing", False), ("resolved", False), ("firing", False), ("resolved", True)
    ]  # fmt: skip
    assert [(e["status"], e["durationSeconds"], e["events"]) for e in timeline["episodes"]] == [
        ("resolved", 60.0, 2), ("resolved", 120.0, 2)
    ]  # fmt: skip


async def test_report_rejects_bad_parameters(worker: Worker, http) -> None:
    for params, says in [
        ({"bucket": "2h"}, "bucket"),
        ({"top": "0"}, "top"),
        ({"filter": 'a=~"("'}, "filter"),
        ({"since": "soon"}, "since"),
    ]:
        async with http.get(f"{worker.url}/report", params=params) as r:
            assert r.status == 400, params
            assert says in (await r.json())["error"], params
