"""What the bridge accepts, the worker stores: each input that once got a 2xx and then crashed the worker, went to
the dead-letter topic, or could never be produced is refused at the door with a 4xx naming the field."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from app.fingerprint import fingerprint
from app.topics import end_offsets
from tests.fixtures import Worker, eventually, unique
from tests.web.test_webhook import am_alert, history, webhook

NUL = "\x00"


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.json()


async def refused(http: aiohttp.ClientSession, worker: Worker, body: Any, status: int, names: str) -> None:
    got, answer = await post(http, f"{worker.url}/webhook", body)
    assert (got, names in answer.get("error", "")) == (status, True), answer


async def stored(http: aiohttp.ClientSession, worker: Worker, run: str, n: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        items = await history(http, worker, filter=f'run="{run}"', limit="1000")
        return items if len(items) >= n else None

    return await eventually(enough, what=f"{n} events of run {run} in /history")


def alive(worker: Worker) -> None:
    assert worker.proc is not None and worker.proc.poll() is None, f"the worker exited:\n{worker.tail()}"


async def test_nul_anywhere_it_would_be_stored_is_refused_and_the_pipeline_goes_on(worker: Worker, http) -> None:
    run = unique()
    alert = am_alert({"alertname": "Nul", "run": run})
    cases = [
        ({**alert, "annotations": {f"summary{NUL}": "x"}}, "alerts.0.annotations: invalid annotation name"),
        ({**alert, "annotations": {"summary": NUL}}, "alerts.0.annotations.summary: contains a NUL"),
        ({**alert, "labels": {**alert["labels"], "x": NUL}}, "alerts.0.labels.x: contains a NUL"),
        ({**alert, "generatorURL": f"http://prom/{NUL}"}, "alerts.0.generatorURL: contains a NUL"),
        ({**alert, "source": NUL}, "alerts.0.source: contains a NUL"),
        ({**alert, "receiver": NUL}, "alerts.0.receiver: contains a NUL"),
    ]
    for bad, names in cases:
        await refused(http, worker, webhook([bad]), 422, names)
    await refused(http, worker, {**webhook([alert]), "receiver": f"team{NUL}"}, 422, "receiver: contains a NUL")
    # A lone surrogate is no text at all: the body is not JSON.
    await refused(http, worker, b'{"alerts": [{"labels": {"a": "\\ud800"}}]}', 400, "not valid JSON")

    async with http.post(f"{worker.url}/webhook", json=webhook([alert])) as r:
        assert r.status == 202
    await stored(http, worker, run, 1)
    alive(worker)


async def test_times_python_cannot_convert_are_refused_the_extremes_it_can_are_stored(worker: Worker, http) -> None:
    run = unique()
    labels = {"alertname": "Extremes", "run": run}
    early = am_alert(labels, starts="0001-01-01T00:00:00+01:00")  # before year 1 in UTC
    await refused(http, worker, webhook([early]), 422, "alerts.0.startsAt: 0001-01-01T00:00:00+01:00 is outside")
    late = am_alert(labels, status="resolved", ends="9999-12-31T23:30:00-01:00")  # after year 9999 in UTC
    await refused(http, worker, webhook([late]), 422, "alerts.0.endsAt: 9999-12-31T23:30:00-01:00 is outside")
    v2 = [{"labels": labels, "startsAt": early["startsAt"]}]
    status, answer = await post(http, f"{worker.url}/api/v2/alerts", v2)
    assert status == 422 and "alerts.0.startsAt" in answer["error"]

    # The first and last instants Python holds in UTC are stored and read back as sent.
    edge = am_alert(labels, starts="0001-01-01T00:00:00-01:00", ends="9999-12-31T22:59:59.999999-01:00")
    zero = am_alert({**labels, "zero": "1"}, starts="0001-01-01T01:00:00+01:00")  # Go's zero time: not set
    async with http.post(f"{worker.url}/webhook", json=webhook([edge, zero])) as r:
        assert r.status == 202, await r.text()
    items = {i["fingerprint"]: i for i in await stored(http, worker, run, 2)}
    got = items[edge["fingerprint"]]
    assert (got["startsAt"], got["endsAt"], got["status"]) == (
        "0001-01-01T01:00:00.000Z", "9999-12-31T23:59:59.999Z", "firing"
    )
    unset = items[zero["fingerprint"]]
    assert unset["endsAt"] is None and unset["startsAt"] >= "2026"  # startsAt not set: the time it came in
    alive(worker)


async def test_what_the_worker_would_dead_letter_is_refused_by_the_bridge(worker: Worker, http) -> None:
    alert = am_alert({"alertname": "Deep", "run": unique()})
    # The top-level receiver goes into each alert: the alert's limit holds for it.
    too_long = {**webhook([alert]), "receiver": "r" * 300}
    await refused(http, worker, too_long, 422, "receiver: String should have at most 256")
    # JSON nested deeper than the topic decoder reads, in a field nothing reads: once 202, then dead-lettered.
    for depth in (201, 254, 300):
        deep = b"[" * depth + b"]" * depth
        body = orjson.dumps(webhook([{**alert, "extra": "DEEP"}])).replace(b'"DEEP"', deep)
        await refused(http, worker, body, 422, "alerts.0: nested too deeply")
        v2 = orjson.dumps([{"labels": alert["labels"], "x": "DEEP"}]).replace(b'"DEEP"', deep)
        status, answer = await post(http, f"{worker.url}/api/v2/alerts", v2)
        assert status == 422 and answer["error"].startswith("alerts.0: nested too deeply"), answer
    await refused(http, worker, webhook([alert, 5]), 422, "alerts.1: must be an alert object, got int")


async def test_an_alert_kafka_cannot_take_is_413_before_anything_of_its_request_is_produced(
    worker: Worker, http
) -> None:
    run = unique()
    small = am_alert({"alertname": "Small", "run": run})
    big = am_alert({"alertname": "Big", "run": run})
    big["annotations"] = {f"part{i}": "x" * 8000 for i in range(200)}  # 1.6 MB: valid, but over Kafka's 1 MB
    before = await end_offsets(worker.endpoints.kafka_brokers, worker.topic)
    status, answer = await post(http, f"{worker.url}/webhook", webhook([small, big]))
    assert status == 413, answer
    assert answer["error"].startswith("alerts.1: ") and "more than the 1000000 bytes Kafka takes" in answer["error"]
    assert await end_offsets(worker.endpoints.kafka_brokers, worker.topic) == before  # not even the small one
    # Without the big one it goes through: the sender learns which alert to drop.
    async with http.post(f"{worker.url}/webhook", json=webhook([small])) as r:
        assert r.status == 202
    await stored(http, worker, run, 1)


async def test_a_fingerprint_that_is_not_its_labels_own_is_refused(worker: Worker, http) -> None:
    victim = {"alertname": "Victim", "run": unique()}
    forged = {**am_alert({"alertname": "Forger", "run": unique()}), "fingerprint": fingerprint(victim)}
    await refused(http, worker, webhook([forged]), 422, f"alerts.0.fingerprint: {fingerprint(victim)} is not the")
    v2 = [{"labels": forged["labels"], "fingerprint": "0" * 16}]
    status, answer = await post(http, f"{worker.url}/api/v2/alerts", v2)
    assert status == 422 and "alerts.0.fingerprint" in answer["error"]


async def test_limits_on_names_and_on_the_webhooks_own_label_sets(worker: Worker, http) -> None:
    run = unique()
    alert = am_alert({"alertname": "Limits", "run": run})
    long_name = {**alert, "labels": {**alert["labels"], "n" * 9000: "v"}}
    await refused(http, worker, webhook([long_name]), 422, "alerts.0.labels: label name 'nnnn")
    await refused(http, worker, webhook([{**alert, "annotations": {"runbook-url": "u"}}]), 422,
                  "alerts.0.annotations: invalid annotation name 'runbook-url'")  # fmt: skip
    many = {f"l{i}": "v" for i in range(257)}
    for field in ("groupLabels", "commonLabels", "commonAnnotations"):
        await refused(http, worker, {**webhook([alert]), field: many}, 422, f"{field}: Dictionary should have at most")
    await refused(http, worker, {**webhook([alert]), "commonLabels": {"bad-name": "v"}}, 422,
                  "commonLabels: invalid label name 'bad-name'")  # fmt: skip
    await refused(http, worker, {**webhook([alert]), "commonAnnotations": {"x": NUL}}, 422,
                  "commonAnnotations.x: contains a NUL")  # fmt: skip
    # At the limits: accepted and stored.
    widest = am_alert({**alert["labels"], "n" * 1024: "v" * 8192})
    widest["annotations"] = {"a" * 1024: "b" * 8192}
    at_most = {**webhook([widest]), "commonLabels": dict(list(many.items())[:256])}
    async with http.post(f"{worker.url}/webhook", json=at_most) as r:
        assert r.status == 202, await r.text()
    [got] = await stored(http, worker, run, 1)
    assert got["labels"] == widest["labels"] and got["annotations"] == widest["annotations"]
