"""Consumer-group behaviour on real Kafka: two workers with one leaving mid-stream equal one worker,
and replaying the whole topic into a fresh consumer group changes nothing in PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from agents.ingest import owner_partition
from app.bench.stream import generate
from tests.fixtures import Worker, eventually

N_EVENTS = 12_000
FINGERPRINTS = 400
ROW = "fingerprint, status, starts_at, ends_at, duplicates, flapping, last_seen_at, received_at, decision"


async def produce(worker: Worker, messages: list[tuple[bytes, bytes]], topic: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.endpoints.kafka_brokers, acks="all", linger_ms=10)
    await producer.start()
    try:
        for i in range(0, len(messages), 2000):
            futures = [await producer.send(topic or worker.topic, v, key=k) for k, v in messages[i : i + 2000]]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def stored(db, topic: str) -> int:  # type: ignore[no-untyped-def]
    return int(await db.fetchval("SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE topic = $1", topic))


async def topic_code(db, topic: str) -> int:  # type: ignore[no-untyped-def]
    return int(await db.fetchval("SELECT code FROM topics WHERE name = $1", topic))


async def rows(db, topic: str, *, timing: bool = True) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    """The topic's events, in a stable order; without `timing`, only what does not depend on broker times."""
    code = await topic_code(db, topic)
    cols = ROW if timing else "fingerprint, status, starts_at, ends_at, duplicates, flapping, decision"
    result = await db.fetch(
        f"SELECT {cols} FROM alert_events WHERE id >> 50 = $1 ORDER BY fingerprint, starts_at, status, id", code
    )
    return [tuple(r) for r in result]


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


@pytest.mark.xfail(
    reason="known open defect (issue 4): under CPU contention a partition taken over mid-stream can still end "
    "with a few duplicates counted differently, or the remaining worker stalls after the rebalance",
    strict=False,
)
async def test_two_workers_then_one_leaves_equals_one_worker(make_worker, db, http) -> None:  # type: ignore[no-untyped-def]
    messages = list(generate(N_EVENTS, FINGERPRINTS, uuid.uuid4().hex[:8], seed=11))

    alone = make_worker(flap_threshold=4)
    await alone.wait_ready()
    await produce(alone, messages)
    await eventually(lambda: _all(db, alone.topic), timeout=240, what="the single worker to store the stream")

    first = make_worker(flap_threshold=4)
    second = make_worker(env=first.env, data_dir=str(first.workdir / "second-state"))
    await first.wait_ready()
    await second.wait_ready()
    await produce(first, messages)
    await eventually(lambda: _progress(db, first.topic, N_EVENTS // 4), timeout=240, what="a quarter stored")
    assert second.stop(signal.SIGTERM) == 0  # leaves the group mid-stream: its partitions move to `first`
    await eventually(lambda: _all(db, first.topic), timeout=90, what="the remaining worker to store the rest")

    two, one = await rows(db, first.topic, timing=False), await rows(db, alone.topic, timing=False)
    differ = {r[0] for r in set(two) ^ set(one)}
    partitions = sorted({owner_partition(fp, 4) for fp in differ})
    offsets = {
        t: sorted(
            tuple(r) for r in await db.fetch("SELECT partition, next_offset FROM sink_offsets WHERE topic = $1", t)
        )
        for t in (first.topic, alone.topic)
    }
    probe = sorted(differ)[:1]
    dump = [
        tuple(r)
        for r in await db.fetch(
            "SELECT id >> 50, (id >> 40) & 1023, id & 1099511627775, status, decision, duplicates, received_at"
            " FROM alert_events WHERE fingerprint = ANY($1) ORDER BY received_at",
            probe,
        )
    ]
    topics = [tuple(r) for r in await db.fetch("SELECT * FROM topics")]
    assert two == one, (
        f"{len(differ)} fingerprints differ, on partitions {partitions}; offsets {offsets}; {probe}: {dump}; {topics}"
    )
    assert len(await rows(db, first.topic)) > FINGERPRINTS  # transitions made rows beyond one per alert


async def test_replaying_the_topic_into_a_fresh_group_changes_nothing(make_worker, db, http) -> None:  # type: ignore[no-untyped-def]
    messages = list(generate(N_EVENTS // 2, FINGERPRINTS, uuid.uuid4().hex[:8], seed=12))
    original = make_worker()
    await original.wait_ready()
    await produce(original, messages)
    await eventually(lambda: _all(db, original.topic, len(messages)), timeout=240, what="the stream stored")
    before = await rows(db, original.topic)
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
