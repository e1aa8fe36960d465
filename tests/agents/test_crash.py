"""Crash test: a worker killed with SIGKILL at random moments while draining 50k events ends with exactly the
reference model's PostgreSQL state (no event lost, no duplicate counted twice, no flag or episode off)."""

from __future__ import annotations

import random
import signal
import time
import uuid

import orjson

from app.bench.stream import generate
from tests.agents.streams import assert_equals_model, drained, produce, read_topic, stored
from tests.fixtures import eventually

N_EVENTS = 50_000
FINGERPRINTS = 2_000
KILLS = 4


async def test_sigkill_at_random_moments_changes_nothing(make_worker, db) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    messages = list(generate(N_EVENTS, FINGERPRINTS, run, seed=21))
    worker = make_worker(flap_threshold=4)
    await worker.wait_ready()  # it creates the topic
    worker.stop()
    # The whole stream is a backlog before the kills begin: however fast the worker drains it, each kill
    # falls mid-stream.
    await produce(worker, messages)
    topic = worker.topic
    worker = make_worker(env=worker.env)
    await worker.wait_ready()
    rng = random.Random(7)
    kills = []
    started = time.monotonic()
    for _ in range(KILLS):
        # Somewhere in the next stretch of the stream, never after the end.
        target = (await stored(db, topic)) + rng.randrange(1_500, 6_000)
        if target >= N_EVENTS:
            break
        await eventually(lambda t=target: _at(db, topic, t), timeout=120, what=f"{target} stored")
        worker.stop(signal.SIGKILL)
        kills.append(await stored(db, topic))
        worker = make_worker(env=worker.env)  # same consumer group and RocksDB directory
        await worker.wait_ready()
    await drained(db, worker, timeout=300)

    topic_messages = await read_topic(worker.endpoints.kafka_brokers, topic)
    model = await assert_equals_model(db, worker, topic_messages, where="labels->>'bench' = $1", args=[run])
    # /report's per-alert rollups kept in step through the kills: each alert's totals are its rows' sums (the sink
    # sends each resend's stored counter from the worker's state; the store checks it against the row).
    drift = await db.fetch(
        """SELECT e.fingerprint, e.events, e.duplicates, t.events AS t_events, t.duplicates AS t_duplicates
           FROM (SELECT fingerprint, count(*) AS events, sum(duplicates) AS duplicates,
                        count(*) FILTER (WHERE flapping) AS flapping_events
                 FROM alert_events WHERE labels->>'bench' = $1 GROUP BY 1) AS e
           LEFT JOIN report_alert_totals AS t USING (fingerprint)
           WHERE (t.events, t.duplicates, t.flapping_events)
                 IS DISTINCT FROM (e.events, e.duplicates, e.flapping_events)""",
        run,
    )
    assert [dict(r) for r in drift[:5]] == [], len(drift)
    # Every stored row's event reached the events topic, however the kills fell: repeats allowed, no loss.
    events = await read_topic(worker.endpoints.kafka_brokers, f"{topic}-events")
    published = [orjson.loads(m.value)["id"] for m in events]
    stored_ids = {str(r["id"]) for r in await db.fetch("SELECT id FROM alert_events WHERE labels->>'bench' = $1", run)}
    assert set(published) == stored_ids, (len(set(published)), len(stored_ids))
    print(
        f"crash test: {len(topic_messages)} events, {len(kills)} SIGKILLs at stored offsets {kills}; "
        f"{len(model.events)} event rows and {len(model.alerts)} alerts equal the model (0 differences); "
        f"{len(published)} events published for them ({len(published) - len(stored_ids)} repeats); "
        f"{time.monotonic() - started:.0f} s"
    )
    assert len(kills) == KILLS
    worker.stop()


async def _at(db, topic: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await stored(db, topic) >= n
