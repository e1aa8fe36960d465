"""Property: for any generated stream (tests/agents/generated.py), a real worker's PostgreSQL rows equal the
reference model's. Windows are short (1 s dedup, 3 s flap) so a few pauses cross them."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, event, given, settings

from app.topics import end_offsets
from tests.agents.generated import message, streams
from tests.agents.streams import assert_equals_model, drained, read_topic
from tests.fixtures import Worker

PAUSE_S = 1.3  # longer than the 1 s dedup window
CI = os.environ.get("CI") == "true"
EXAMPLES = int(os.environ.get("ALERT_HISTORY_MODEL_EXAMPLES", "15"))

@pytest.fixture(scope="module")
async def model_worker(make_worker) -> Worker:  # type: ignore[no-untyped-def]
    w = make_worker(dedup_window=1, flap_window=3, flap_threshold=3)
    await w.wait_ready()
    return w


async def _play(worker: Worker, steps: list[tuple[str, Any]], run: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.endpoints.kafka_brokers, acks="all")
    await producer.start()
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        previous: tuple[bytes | None, bytes] | None = None
        for kind, arg in steps:
            if kind == "pause":
                await asyncio.sleep(PAUSE_S)
            elif kind == "poison":
                await producer.send_and_wait(worker.topic, arg)
            elif kind == "send" or previous is not None:
                previous = message(arg, run, now) if kind == "send" else previous
                await producer.send_and_wait(worker.topic, previous[1], key=previous[0])
    finally:
        await producer.stop()


# pytest-timeout must never fire inside an example: it interrupts the event loop mid-example, and the
# abandoned example then runs on alongside the next ones (hypothesis goes on) and pollutes them.
@pytest.mark.timeout(max(300, EXAMPLES * 12))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,  # CI runs the same examples every time; locally each run explores new ones
    phases=[Phase.explicit, Phase.reuse, Phase.generate] if CI else list(Phase),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
@given(steps=streams)
async def test_postgres_equals_the_model(model_worker: Worker, db, steps: list[tuple[str, Any]]) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:10]
    start = await end_offsets(model_worker.endpoints.kafka_brokers, model_worker.topic)
    await _play(model_worker, steps, run)
    await drained(db, model_worker, timeout=60)
    messages = await read_topic(model_worker.endpoints.kafka_brokers, model_worker.topic, start)
    history = await assert_equals_model(db, model_worker, messages, where="labels->>'run' = $1", args=[run])
    # What the examples covered (pytest --hypothesis-show-statistics).
    for row in history.events:
        event(f"{row.decision}{' flapping' if row.flapping else ''}")
    event(f"duplicates counted: {min(sum(r.duplicates for r in history.events), 5)}+")
    event(f"episodes: {min(sum(a.episodes for a in history.alerts.values()), 6)}+")
