"""POST /webhook → Kafka → pipeline → PostgreSQL → GET /history, on the real services."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from app.fingerprint import fingerprint
from app.partition import fingerprint_partition
from tests.fixtures import Worker, eventually, unique


def webhook(alerts: list[dict[str, Any]], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "team-x",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "alerts": alerts,
    }


def am_alert(
    labels: dict[str, str],
    status: str = "firing",
    starts: str = "2026-11-24T10:00:00.123456789Z",
    ends: str = "0001-01-01T00:00:00Z",
) -> dict[str, Any]:
    """An alert exactly as Alertmanager's webhook sends it, fingerprint included."""
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "s"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prom/graph?g0.expr=up",
        "fingerprint": fingerprint(labels),
    }


async def history(http: aiohttp.ClientSession, worker: Worker, **params: str) -> list[dict[str, Any]]:
    async with http.get(f"{worker.url}/history", params=params) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["items"]  # type: ignore[no-any-return]


async def test_webhook_alerts_are_queryable_with_alertmanager_fingerprints(worker: Worker, http) -> None:
    run = unique()
    alerts = [
        am_alert({"alertname": "Disk", "run": run, "instance": f"h{i}:9100", "severity": "warning"}) for i in range(25)
    ]
    async with http.post(f"{worker.url}/webhook", json=webhook(alerts)) as r:
        assert r.status == 202
        assert await r.json() == {"accepted": 25}

    items = await eventually(lambda: _all(http, worker, run, 25), what="25 events in /history")
    assert {i["fingerprint"] for i in items} == {a["fingerprint"] for a in alerts}
    one = next(i for i in items if i["labels"]["instance"] == "h0:9100")
    assert one["status"] == "firing" and one["endsAt"] is None and one["duplicates"] == 0
    assert one["startsAt"] == "2026-11-24T10:00:00.123Z"
    assert one["severity"] == "warning"
    assert set(one) >= {"id", "receivedAt", "lastSeenAt", "flapping", "generatorURL", "annotations", "classification",
                        "filter"}  # fmt: skip

    async def enriched() -> list[dict[str, Any]] | None:  # null until the enrich agent has seen the event
        got = await _all(http, worker, run, 25)
        return got if got and all(i["classification"] and i["filter"] for i in got) else None

    for i in await eventually(enriched, what="the 25 events classified and filtered"):
        assert i["classification"]["category"] == "saturation" and i["classification"]["source"] == "rules"
        assert i["filter"] == {"rule": None, "action": "allow"}


async def _all(http, worker, run, n):  # type: ignore[no-untyped-def]
    items = await history(http, worker, filter=f'run="{run}"', limit="1000")
    return items if len(items) >= n else None


async def test_resends_are_counted_not_stored_and_resolve_is_a_transition(worker: Worker, http) -> None:
    run = unique()
    alert = am_alert({"alertname": "Flappy", "run": run})
    for _ in range(3):  # Alertmanager's repeat_interval resends, or an HA pair
        async with http.post(f"{worker.url}/webhook", json=webhook([alert])) as r:
            assert r.status == 202
    resolved = am_alert({"alertname": "Flappy", "run": run}, status="resolved", ends="2026-11-24T10:05:00Z")
    async with http.post(f"{worker.url}/webhook", json=webhook([resolved], "resolved")) as r:
        assert r.status == 202

    items = await eventually(lambda: _all(http, worker, run, 2), what="firing + resolved rows")
    assert [(i["status"], i["duplicates"]) for i in items] == [("resolved", 0), ("firing", 2)]
    async with http.get(f"{worker.url}/alerts/{alert['fingerprint']}/history") as r:
        timeline = (await r.json())["items"]
    assert [i["status"] for i in timeline] == ["firing", "resolved"]  # oldest first


async def test_the_topic_gets_each_alert_as_alertmanager_sent_it(worker: Worker, http) -> None:
    from app.topics import end_offsets
    from tests.agents.streams import read_topic

    run = unique()
    sent = {**am_alert({"alertname": "AsSent", "run": run}), "startsAt": "2026-11-24T12:00:00.123456789+02:00"}
    del sent["fingerprint"]  # absent: the key is Alertmanager's, the value stays as sent
    start = await end_offsets(worker.endpoints.kafka_brokers, worker.topic)
    async with http.post(f"{worker.url}/webhook", json=webhook([sent])) as r:
        assert r.status == 202
    messages = await read_topic(worker.endpoints.kafka_brokers, worker.topic, start)
    mine = [m for m in messages if run.encode() in m.value]
    # The sender's object, times as it wrote them (a resend stays byte-identical), plus receiver and origin;
    # keyed by its fingerprint, so on that fingerprint's partition.
    assert [orjson.loads(m.value) for m in mine] == [{**sent, "receiver": "team-x", "source": "alertmanager-webhook"}]
    assert mine[0].partition == fingerprint_partition(fingerprint(sent["labels"]), 4)


async def test_a_web_node_bridges_and_reads_and_takes_no_partitions(make_worker, worker: Worker, http) -> None:  # type: ignore[no-untyped-def]
    node = make_worker(env=worker.env, pipeline_enabled=False)  # the same topic and group as the worker
    await node.wait_ready(partitions=False)
    run = unique()
    alert = am_alert({"alertname": "ViaWebNode", "run": run})
    async with http.post(f"{node.url}/webhook", json=webhook([alert])) as r:
        assert r.status == 202
    # The worker stores it; the web node reads it.
    items = await eventually(lambda: _all(http, node, run, 1), what="the alert in the web node's /history")
    assert items[0]["fingerprint"] == alert["fingerprint"]
    async with http.get(f"{node.url}/readyz") as r:
        checks = (await r.json())["checks"]
        assert "assigned_partitions" not in checks and checks["role"].startswith("web node")
    async with http.get(f"{worker.url}/readyz") as r:
        assert (await r.json())["checks"]["assigned_partitions"] == 4  # the node never joined the group
    node.stop()


async def test_bad_bodies_get_4xx_naming_the_field(worker: Worker, http) -> None:
    url = f"{worker.url}/webhook"
    cases = [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "empty"),
        (b"<xml/>", "text/xml", 415, "Content-Type"),
        (orjson.dumps({"alerts": "x"}), "application/json", 422, "alerts"),
        (orjson.dumps({"alerts": []}), "application/json", 422, "alerts"),
        (orjson.dumps(webhook([{"labels": {}}])), "application/json", 422, "alerts.0.labels"),
        (orjson.dumps(webhook([{"labels": {"a": 5}}])), "application/json", 422, "alerts.0.labels.a"),
        (orjson.dumps(webhook([{"labels": {"bad-name": "x"}}])), "application/json", 422,
         "alerts.0.labels: invalid label name 'bad-name'"),
        (orjson.dumps(webhook([{"labels": {"a": "b"}, "fingerprint": "XYZ"}])), "application/json", 422,
         "alerts.0.fingerprint: must be 16 lowercase hex digits"),
        (
            orjson.dumps(webhook([{"labels": {"a": "b"}, "startsAt": "soon"}])),
            "application/json",
            422,
            "alerts.0.startsAt",
        ),
        (
            orjson.dumps({**webhook([{"labels": {"a": "b"}}]), "version": "3"}),
            "application/json",
            422,
            "version",
        ),
        (b"[" + b'"x",' * 2_000_000 + b'"x"]', "application/json", 413, "larger than"),
    ]
    for body, ctype, status, names in cases:
        async with http.post(url, data=body, headers={"Content-Type": ctype}) as r:
            assert r.status == status, (body[:60], await r.text())
            error = (await r.json())["error"]
            assert names in error, (body[:60], error)


async def test_postable_alerts_api_v2(worker: Worker, http) -> None:
    run = unique()
    body = [
        {
            "labels": {"alertname": "FromPrometheus", "run": run},
            "annotations": {},
            "startsAt": "2026-11-24T10:00:00Z",
            "generatorURL": "http://prom",
        }
    ]
    async with http.post(f"{worker.url}/api/v2/alerts", json=body) as r:
        assert r.status == 200
    items = await eventually(lambda: _all(http, worker, run, 1), what="v2 alert stored")
    assert items[0]["fingerprint"] == fingerprint(body[0]["labels"])  # type: ignore[arg-type]


async def test_health_and_readiness(worker: Worker, http) -> None:
    async with http.get(f"{worker.url}/healthz") as r:
        assert r.status == 200
    async with http.get(f"{worker.url}/readyz") as r:
        body = await r.json()
        assert r.status == 200 and body["checks"]["kafka"] == "ok" and body["checks"]["postgres"] == "ok"
    async with http.get(f"{worker.url}/metrics") as r:
        assert "alert_history_events_total" in await r.text()
