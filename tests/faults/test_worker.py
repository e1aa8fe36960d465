"""SIGTERM of the worker in the middle of a burst of webhooks: stopped, restarted, nothing lost or doubled.

Clients see the bridge go away (refused connections, or an answer cut off) and resend, as Alertmanager does; the
batch the pipeline was storing stays unacked and is replayed by the restarted worker, decided again as the same
events. Only the worker is signalled: the session's Kafka and PostgreSQL serve it.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.agents.streams import drained
from tests.faults.load import WebhookLoad, verify


@pytest.mark.slow
async def test_sigterm_of_the_worker_mid_burst_loses_and_doubles_nothing(endpoints, fault_workers, db) -> None:  # type: ignore[no-untyped-def]
    worker = fault_workers(endpoints)
    await worker.wait_ready()
    async with WebhookLoad(worker.url, clients=8, batch=50, pause_s=0) as load:
        await load.wait_accepted(2_000)
        code = await asyncio.to_thread(worker.stop, signal.SIGTERM)
        stopped = load.summary()
        worker.start()  # same port, consumer group and RocksDB directory
        await worker.wait_ready()
        await load.wait_accepted(2_000)
    await drained(db, worker, timeout=180)
    verdict = await verify(db, load, f"worker SIGTERM mid-burst (exit {code}), restarted")
    verdict.assert_exactly_once()
    assert code == 0, f"the worker's exit on SIGTERM was {code}:\n{worker.tail()}"
    assert set(verdict.statuses) <= {202, 503}, f"{verdict.line()}; when stopped: {stopped}"
