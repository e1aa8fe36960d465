"""The events topic (`<TOPIC>-events`): one message per new stored row, key = fingerprint, value = the event as
`/history` returns it; resends add none."""

from __future__ import annotations

import orjson

from tests.agents.streams import read_topic
from tests.fixtures import Worker, eventually, unique
from tests.web.test_webhook import am_alert, history, webhook


async def test_each_new_row_is_one_event_on_the_topic_as_history_shows_it(worker: Worker, http) -> None:  # type: ignore[no-untyped-def]
    run = unique()
    labels = {"alertname": "OnTheEventsTopic", "run": run, "severity": "critical"}
    firing = am_alert(labels)
    for _ in range(3):  # two resends: counted on the row, no event
        async with http.post(f"{worker.url}/webhook", json=webhook([firing])) as r:
            assert r.status == 202
    resolved = am_alert(labels, status="resolved", ends="2026-11-24T10:05:00Z")
    async with http.post(f"{worker.url}/webhook", json=webhook([resolved], "resolved")) as r:
        assert r.status == 202

    async def both() -> list[dict[str, object]] | None:
        items = await history(http, worker, filter=f'run="{run}"')
        return items if len(items) == 2 and items[1]["duplicates"] == 2 else None

    items = await eventually(both, what="the firing row with its two resends, and the resolve")
    topic = f"{worker.topic}-events"

    async def on_topic() -> list[tuple[bytes, dict[str, object]]] | None:
        got = [
            (m.key, orjson.loads(m.value))
            for m in await read_topic(worker.endpoints.kafka_brokers, topic)
            if run.encode() in m.value
        ]
        return got if len(got) >= 2 else None

    messages = await eventually(on_topic, what="two events on the events topic")
    assert [key for key, _ in messages] == [firing["fingerprint"].encode()] * 2
    sent = [event for _, event in messages]
    assert [e["status"] for e in sent] == ["firing", "resolved"]  # one fingerprint, one partition: in order
    # As /history shows it, but for what grows after the row is stored: the resends counted on it, and what the
    # enrich agent decides once it has read this very message.
    grown = ("duplicates", "lastSeenAt", "classification", "filter")
    assert all(e["classification"] is None and e["filter"] is None for e in sent)
    assert [{k: v for k, v in e.items() if k not in grown} for e in sent] == [
        {k: v for k, v in i.items() if k not in grown} for i in reversed(items)
    ]
    assert sent[0]["duplicates"] == 0 and sent[0]["lastSeenAt"] == sent[0]["receivedAt"]
