"""Consumer-group behaviour on real Kafka: two workers with one leaving mid-stream end with the reference
model's rows, and replaying the whole topic into a fresh consumer group changes nothing in PostgreSQL."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import aiohttp

from app.bench.stream import generate
from tests.agents.streams import assert_equals_model, drained, produce, read_topic, rows, stored
from tests.fixtures import Worker, eventually

N_EVENTS = 12_000
FINGERPRINTS = 400


async def events_seen(http: aiohttp.ClientSession, worker: Worker) -> int:
    """Messages the worker decided on (replays included), from its /metrics."""
    async with http.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("alert_history_events_total{")
        )
    )


async def test_two_workers_then_one_leaves_equals_the_model(make_worker, db) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    messages = list(generate(N_EVENTS, FINGERPRINTS, run, seed=11))
    first = make_worker(flap_threshold=4)
    second = make_worker(env=first.env, data_dir=str(first.workdir / "second-state"))
    await first.wait_ready()
    await second.wait_ready()
    await produce(first, messages)
    await eventually(lambda: _progress(db, first.topic, N_EVENTS // 4), timeout=240, what="a quarter stored")
    assert second.stop(signal.SIGTERM) == 0  # leaves the group mid-stream: its partitions move to `first`
    await drained(db, first, timeout=120)

    topic_messages = await read_topic(first.endpoints.kafka_brokers, first.topic)
    model = await assert_equals_model(db, first, topic_messages, where="labels->>'bench' = $1", args=[run])
    assert len(model.events) > FINGERPRINTS  # transitions made rows beyond one per alert


async def test_replaying_the_topic_into_a_fresh_group_changes_nothing(make_worker, db, http) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    messages = list(generate(N_EVENTS // 2, FINGERPRINTS, run, seed=12))
    original = make_worker()
    await original.wait_ready()
    await produce(original, messages)
    await eventually(lambda: _all(db, original.topic, len(messages)), timeout=240, what="the stream stored")
    before = await rows(db, original.topic)
    topic_messages = await read_topic(original.endpoints.kafka_brokers, original.topic)
    await assert_equals_model(db, original, topic_messages, where="labels->>'bench' = $1", args=[run])
    original.stop()

    # A new consumer group and empty table state: it reads the topic from offset 0.
    fresh_app = f"replay-{uuid.uuid4().hex[:8]}"
    replay = make_worker(env=original.env, app_id=fresh_app, data_dir=str(original.workdir / "replay-state"))
    await replay.wait_ready()
    await eventually(
        lambda: _at_least(events_seen(http, replay), len(messages)), timeout=240, what="the replay to read everything"
    )
    assert await rows(db, original.topic) == before

    # And the rebuilt state goes on deciding: a resend of the last message is one more duplicate, not a row.
    key, value = messages[-1]
    await produce(replay, [(key, value)])
    await eventually(lambda: _all(db, original.topic, len(messages) + 1), timeout=60, what="the resend stored")
    after = await rows(db, original.topic)
    assert len(after) == len(before)
    assert sum(r[4] for r in after) == sum(r[4] for r in before) + 1


async def _all(db, topic: str, n: int = N_EVENTS) -> bool:  # type: ignore[no-untyped-def]
    return await stored(db, topic) >= n


async def _progress(db, topic: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await stored(db, topic) >= n


async def _at_least(count: Any, n: int) -> bool:
    return int(await count) >= n
