"""`alert-history bench` at a tiny size: every phase runs and the last line is the BENCH contract.

Speed is the benchmark's business, never asserted here; this only keeps `make bench` working.
"""

from __future__ import annotations

import asyncio
import os
import sys

import orjson

from app.services import Endpoints
from tests.fixtures import scratch_database_url

BENCH_KEYS = {
    "e2e_alerts_per_s", "naive_alerts_per_s", "freshness_p95_ms", "webhook_alerts_per_s", "webhook_p99_ms",
    "history_p95_ms", "worker_rss_mb",
}  # fmt: skip
SIZES = ["--events", "3000", "--fingerprints", "300", "--naive-events", "300", "--webhook-alerts", "1000",
         "--history-events", "3000", "--queries", "4", "--paced-seconds", "1"]  # fmt: skip


def test_bench_runs_every_phase_and_ends_with_the_bench_line(endpoints: Endpoints) -> None:
    async def bench() -> tuple[int | None, str, str]:
        async with scratch_database_url(endpoints, "bench") as url:
            env = {**os.environ, "ALERT_HISTORY_KAFKA_BROKERS": endpoints.kafka_brokers,
                   "ALERT_HISTORY_DATABASE_URL": url, "ALERT_HISTORY_REDIS_URL": endpoints.redis_url or ""}  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app.cli", "bench", *SIZES, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 600)
            return proc.returncode, out.decode(), err.decode()

    code, out, err = asyncio.run(bench())
    assert code == 0, err[-3000:]
    lines = out.strip().splitlines()
    assert lines[-1].startswith("BENCH "), lines[-5:]
    summary = orjson.loads(lines[-1].removeprefix("BENCH "))
    assert set(summary) == BENCH_KEYS
    missing = {k for k, v in summary.items() if not isinstance(v, int | float) or v <= 0}
    assert not missing, summary  # every goal row measured something
    table = "\n".join(lines[:-1])
    for row in ("e2e / naive", "e2e, 2 workers", "webhook bridge alone", "webhook while the worker stores it",
                "freshness p95 at", "/report 30 days: p50", "worker RSS after e2e"):  # fmt: skip
        assert row in table, row
