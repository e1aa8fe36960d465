"""The enrich agent without an LLM: the rules file's classification before the built-in rules, the filter rules
(allow, deny, delay with a flap inside `for` and a long firing), the notify topic's shape in each mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agents.enrich.conftest import decided, metric, notified, send, set_mode
from tests.fixtures import Worker, eventually, unique

HOLD_S = 8  # the delay rule's `for`: long enough that a resolve sent right after its firing always comes within it

RULES = f"""
classification:
  - match: ['alertname=~"Watchdog.*"']
    severity: noise
  - match: ['team="db"', 'alertname="DiskFull"']
    severity: critical
    category: storage
    recommendations: ["grow the volume"]
filters:
  - name: drop-noise
    match: ['severity="noise"']
    action: deny
  - name: hold-warnings
    match: ['severity="warning"']
    action: delay
    for: {HOLD_S}s
"""


@pytest.fixture(scope="module")
async def ruled(make_worker: Callable[..., Worker], tmp_path_factory: pytest.TempPathFactory) -> Worker:
    path = Path(tmp_path_factory.mktemp("rules")) / "rules.yaml"
    path.write_text(RULES)
    worker = make_worker(rules_file=str(path))
    await worker.wait_ready()
    return worker


async def test_the_rules_file_classifies_before_the_built_in_rules(ruled: Worker, http) -> None:  # type: ignore[no-untyped-def]
    run = unique()
    # The label says warning, the operator's rule says critical: filters see the classification's severity.
    await send(http, ruled, {"alertname": "DiskFull", "team": "db", "severity": "warning", "run": run})
    await send(http, ruled, {"alertname": "KubePodCrashLooping", "severity": "critical", "run": run})
    await send(http, ruled, {"alertname": "Watchdog", "run": run})
    disk, pod, dog = [
        (await decided(http, ruled, f'{{run="{run}",alertname="{name}"}}'))[0]
        for name in ("DiskFull", "KubePodCrashLooping", "Watchdog")
    ]
    assert disk["classification"] == {
        "category": "storage", "severity": "critical", "confidence": 1.0, "source": "rules", "model": None,
        "reasoning": "rules file: classification[1] (team=\"db\", alertname=\"DiskFull\")",
        "recommendations": ["grow the volume"],
    }  # fmt: skip
    assert disk["filter"] == {"rule": None, "action": "allow"}
    # No operator rule: the built-in ones (category from the name, severity from the label).
    assert {k: pod["classification"][k] for k in ("category", "severity", "confidence", "source")} == {
        "category": "availability", "severity": "critical", "confidence": 0.5, "source": "rules"
    }
    assert pod["classification"]["recommendations"], "the built-in rules recommend something per category"
    assert dog["classification"]["severity"] == "noise" and dog["filter"] == {"rule": "drop-noise", "action": "deny"}

    sent = await eventually(lambda: _notified(ruled, run, 2), what="the two allowed events on the notify topic")
    assert sorted(m["event"]["labels"]["alertname"] for m in sent) == ["DiskFull", "KubePodCrashLooping"]
    for m in sent:  # enriched: the event as /history shows it, with its classification
        assert m["mode"] == "enriched" and m["filter"] == {"rule": None, "action": "allow"}
        assert m["event"]["classification"]["source"] == "rules" and "recommendations" not in m
    assert await metric(http, ruled, "alert_history_filter_decisions_total", action="deny") >= 1


async def test_a_flap_within_the_delay_sends_nothing_and_a_long_firing_sends_once(ruled: Worker, http) -> None:  # type: ignore[no-untyped-def]
    run = unique()
    flap = {"alertname": "QueueBacklog", "severity": "warning", "run": run, "case": "flap"}
    await send(http, ruled, flap)
    await send(http, ruled, flap, status="resolved")
    await send(http, ruled, flap, starts="2026-11-24T10:10:00Z")
    await send(http, ruled, flap, status="resolved", starts="2026-11-24T10:10:00Z")
    steady = {"alertname": "QueueBacklog", "severity": "warning", "run": run, "case": "steady"}
    await send(http, ruled, steady)

    flapped = await decided(http, ruled, f'{{run="{run}",case="flap"}}', n=4)
    firing1, resolve1, firing2, resolve2 = flapped
    for firing, resolve in ((firing1, resolve1), (firing2, resolve2)):
        assert firing["filter"]["action"] == "delay" and firing["filter"]["rule"] == "hold-warnings"
        assert resolve["filter"]["cancelled"] == firing["id"]
    released = await eventually(
        lambda: _released(http, ruled, run), timeout=HOLD_S + 30, what="the steady firing released after its delay"
    )
    assert released["filter"]["action"] == "delay" and "until" in released["filter"]
    sent = await _notified(ruled, run, 1)
    assert [m["event"]["id"] for m in sent] == [released["id"]]
    assert sent[0]["filter"] == {"rule": "hold-warnings", "action": "delay"}
    again = await decided(http, ruled, f'{{run="{run}",case="flap"}}', n=4)
    assert [e["filter"].get("cancelled_by") for e in again[0::2]] == [resolve1["id"], resolve2["id"]]

    # Its resolve, after the firing went out, goes out too.
    await send(http, ruled, steady, status="resolved")
    after = await eventually(lambda: _notified(ruled, run, 2), what="the steady alert's resolve published")
    assert [m["event"]["status"] for m in after] == ["firing", "resolved"]
    assert await metric(http, ruled, "alert_history_filter_decisions_total", action="cancelled") >= 2


async def test_each_mode_shapes_the_notify_messages(ruled: Worker, http) -> None:  # type: ignore[no-untyped-def]
    async with http.get(f"{ruled.url}/enrichment/mode") as r:
        assert await r.json() == {"mode": "enriched", "scope": "cluster"}
    async with http.put(f"{ruled.url}/enrichment/mode", json={"mode": "shouty"}) as r:
        assert r.status == 422 and (await r.json())["error"].startswith("mode: ")
    try:
        with_recs = await _in_mode(http, ruled, "transparent_with_recommendations")
        assert with_recs["event"]["classification"] is None
        assert with_recs["recommendations"] == ["grow the volume"]
        plain = await _in_mode(http, ruled, "transparent")
        assert plain["event"]["classification"] is None and "recommendations" not in plain
        # The row keeps its classification whatever the mode: only what is published is shaped.
        probe = plain["event"]["labels"]["probe"]
        (row,) = await decided(http, ruled, f'probe="{probe}"')
        assert row["classification"]["category"] == "storage"
    finally:
        await set_mode(http, ruled, "enriched")


async def test_without_redis_the_mode_is_the_process_own_and_says_so(make_worker, http) -> None:  # type: ignore[no-untyped-def]
    node = make_worker(redis_url="", pipeline_enabled="false", enrichment_mode="transparent")
    await node.wait_ready(partitions=False)
    async with http.get(f"{node.url}/enrichment/mode") as r:
        assert await r.json() == {"mode": "transparent", "scope": "process"}
    answer = await set_mode(http, node, "enriched")
    assert answer["mode"] == "enriched" and answer["scope"] == "process"
    assert "REDIS_URL is not set" in answer["note"]
    async with http.get(f"{node.url}/enrichment/mode") as r:
        assert (await r.json())["mode"] == "enriched"


async def _in_mode(http, worker: Worker, mode: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The first notify message published in `mode` once it is set: alerts are sent until the agent applies it."""
    await set_mode(http, worker, mode)
    run = unique()

    async def published() -> dict[str, Any] | None:
        await send(http, worker, {"alertname": "DiskFull", "team": "db", "run": run, "probe": unique()})
        return next((m for m in await notified(worker, run) if m["mode"] == mode), None)

    return await eventually(published, timeout=30, what=f"a notify message in mode {mode}")


async def _notified(worker: Worker, run: str, n: int) -> list[dict[str, Any]] | None:
    sent = await notified(worker, run)
    assert len(sent) <= n, sent
    return sent if len(sent) == n else None


async def _released(http, worker: Worker, run: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    (steady,) = await decided(http, worker, f'{{run="{run}",case="steady"}}')
    return steady if "released" in steady["filter"] else None
