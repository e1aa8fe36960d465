"""Crash test: a worker killed with SIGKILL at random moments while draining 50k events ends with exactly the
PostgreSQL state of a worker that was never interrupted (no event lost, no duplicate counted twice)."""

from __future__ import annotations

import random
import signal
import time
import uuid

from app.bench.stream import generate
from tests.agents.test_scaleout import produce, rows, stored
from tests.fixtures import eventually

N_EVENTS = 50_000
FINGERPRINTS = 2_000
KILLS = 3


async def test_sigkill_at_random_moments_changes_nothing(make_worker, db) -> None:  # type: ignore[no-untyped-def]
    messages = list(generate(N_EVENTS, FINGERPRINTS, uuid.uuid4().hex[:8], seed=21))

    steady = make_worker()
    await steady.wait_ready()
    await produce(steady, messages)
    await eventually(lambda: _done(db, steady.topic), timeout=300, what="the uninterrupted worker")
    steady.stop()

    worker = make_worker()
    await worker.wait_ready()
    await produce(worker, messages)
    topic = worker.topic
    rng = random.Random(7)
    kills = []
    started = time.monotonic()
    for _ in range(KILLS):
        # Somewhere in the next stretch of the stream, never after the end.
        target = (await stored(db, topic)) + rng.randrange(2_000, 10_000)
        if target >= N_EVENTS:
            break
        await eventually(lambda t=target: _at(db, topic, t), timeout=120, what=f"{target} stored")
        worker.stop(signal.SIGKILL)
        kills.append(await stored(db, topic))
        worker = make_worker(env=worker.env)  # same consumer group and RocksDB directory
        await worker.wait_ready()
    await eventually(lambda: _done(db, worker.topic), timeout=300, what="the restarted worker to finish")

    crashed, clean = await rows(db, worker.topic, timing=False), await rows(db, steady.topic, timing=False)
    differences = len(set(crashed) ^ set(clean))
    print(
        f"crash test: {N_EVENTS} events, {len(kills)} SIGKILLs at stored offsets {kills}, {len(clean)} rows, "
        f"{differences} differences, {time.monotonic() - started:.0f} s"
    )
    assert len(kills) == KILLS
    assert crashed == clean
    worker.stop()


async def _done(db, topic: str) -> bool:  # type: ignore[no-untyped-def]
    return await stored(db, topic) >= N_EVENTS


async def _at(db, topic: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await stored(db, topic) >= n
