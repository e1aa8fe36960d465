"""PostgreSQL frozen (SIGSTOP of every one of its processes) under webhook load.

The bridge does not touch PostgreSQL: it keeps answering 2xx while the sink waits. A short freeze is waited out;
one longer than the sink's bound makes the worker exit 70 rather than ack what it could not store, and the worker
restarted by its supervisor stores everything, once. Reads answer 503 within their timeout meanwhile, never hang.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.agents.streams import drained
from tests.faults.load import WebhookLoad, verify
from tests.faults.supervisor import Supervisor, read

QUERY_TIMEOUT_S = 2.0
READ_MARGIN_S = 5.0  # a read's 503 may take QUERY_TIMEOUT_S, the client-side margin (2 s) and a loaded machine's 3 s
SINK_BOUND_S = 120  # README "Exactly-once in effect": a batch not stored within this makes the worker exit 70
EXIT_MARGIN_S = 25
SHORT_FREEZE_S = 30
LONG_FREEZE_S = 150
READS = ("/history?filter=alertname%3D%22FaultLoad%22&limit=5", "/api/v2/alerts", "/report?since=-1h")


@pytest.mark.slow
async def test_postgres_frozen_30_s_loses_and_doubles_nothing(own_services, fault_workers, pool_for) -> None:  # type: ignore[no-untyped-def]
    own = await own_services(postgres=True)
    db = await pool_for(own.endpoints)
    worker = fault_workers(own.endpoints, query_timeout=QUERY_TIMEOUT_S)
    await worker.wait_ready()
    async with WebhookLoad(worker.url) as load:
        await load.wait_accepted(200)
        with own.stack.process("postgres").frozen():
            before = load.accepted
            await asyncio.sleep(SHORT_FREEZE_S)
            assert load.accepted > before, f"the bridge stopped accepting while PostgreSQL was frozen: {load.summary()}"
        await load.wait_accepted(200)
    assert worker.proc is not None and worker.proc.poll() is None, f"worker exited:\n{worker.tail()}"
    await drained(db, worker, timeout=120)
    verdict = await verify(db, load, f"postgres frozen {SHORT_FREEZE_S} s")
    verdict.assert_exactly_once()
    assert verdict.five_xx == 0 and set(verdict.statuses) == {202} and not verdict.errors, verdict.line()


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_postgres_frozen_150_s_worker_exits_70_and_its_restart_stores_everything_once(
    own_services, fault_workers, pool_for
) -> None:  # type: ignore[no-untyped-def]
    own = await own_services(postgres=True)
    db = await pool_for(own.endpoints)
    worker = fault_workers(own.endpoints, query_timeout=QUERY_TIMEOUT_S)
    await worker.wait_ready()
    postgres = own.stack.process("postgres")
    bound = QUERY_TIMEOUT_S + READ_MARGIN_S
    async with WebhookLoad(worker.url) as load, Supervisor(worker) as supervisor:
        await load.wait_accepted(200)
        with postgres.frozen():
            frozen_at = time.monotonic()
            reads = await asyncio.gather(*(read(worker.url, path, timeout_s=bound + 10) for path in READS))
            try:
                first = await supervisor.first_exit(timeout=SINK_BOUND_S + EXIT_MARGIN_S)
            finally:
                await asyncio.sleep(max(0.0, frozen_at + LONG_FREEZE_S - time.monotonic()))
        await worker.wait_ready(timeout=180)
        await load.wait_accepted(200)
    await drained(db, worker, timeout=180)
    verdict = await verify(db, load, f"postgres frozen {LONG_FREEZE_S} s, worker restarted")
    exits = [(e.code, round(e.at - frozen_at)) for e in supervisor.exits]
    print(
        f"faults postgres frozen {LONG_FREEZE_S} s: worker exits (code, s after the freeze) {exits}; "
        f"reads {[(r.status, round(r.seconds, 1)) for r in reads]}"
    )
    verdict.assert_exactly_once()
    assert first.code == 70, f"first exit {first.code}, not 70:\n{worker.tail()}"
    assert set(verdict.statuses) <= {202, 503}, verdict.line()
    assert all(r.status == 503 and r.seconds < bound for r in reads), reads
