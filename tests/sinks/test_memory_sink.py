"""The in-memory sink the decider's property test writes to applies batches exactly as PostgreSQL's
alert_history_store_batch() does: the same batches, written to both, leave the same rows."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest

from app.bench.stream import generate
from app.records import Outcome
from app.services import Endpoints
from sinks.postgres import PostgresSink
from tests.agents.test_decider import CRASHES, TOPIC, Topic, Worker
from tests.fixtures import scratch_database_url
from tests.model import ALERT_COLUMNS, EVENT_COLUMNS, alert_tuples, event_tuples
from tests.sinks.memory import MemorySink


class Recording(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[list[Outcome], dict[int, int]]] = []

    async def write(self, topic: str, outcomes: Sequence[Outcome], next_offsets: Mapping[int, int]) -> None:
        await super().write(topic, outcomes, next_offsets)
        self.batches.append((list(outcomes), dict(next_offsets)))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_same_batches_leave_the_same_rows(endpoints: Endpoints, seed: int) -> None:
    rng = random.Random(seed)
    topic = Topic(rng)
    sink = Recording()
    worker = Worker(topic, sink, rng)
    for i, (key, value) in enumerate(generate(1500, 40, f"memory{seed}", seed=seed)):
        topic.clock_ms += rng.choice((0, 5, 50, 1300))  # some pauses past the 1 s dedup window
        topic.append(key if i % 7 else None, value)  # some unkeyed: re-keyed by the decider
        if rng.random() < 0.3:
            worker.cycle(crash=rng.choice(CRASHES) if rng.random() < 0.05 else None)
        if rng.random() < 0.05:
            worker.expire()  # an alert back after its state expired: the store function asks its row
    worker.drain()
    assert sink.writes > 50 and worker.crashes > 0

    async with scratch_database_url(endpoints, "memory_sink") as url:
        postgres = PostgresSink(url)
        await postgres.open()
        try:
            assert await postgres.topic_code(TOPIC) == 1  # the decider's code in the in-process test
            for outcomes, next_offsets in sink.batches:
                await postgres.write(TOPIC, outcomes, next_offsets)
            assert postgres.pool is not None
            events = await postgres.pool.fetch(f"SELECT {EVENT_COLUMNS} FROM alert_events")
            alerts = await postgres.pool.fetch(f"SELECT {ALERT_COLUMNS} FROM alerts")
        finally:
            await postgres.close()
    assert event_tuples(events) == event_tuples(sink.event_tuples())
    assert alert_tuples(alerts) == alert_tuples(sink.alert_tuples())
