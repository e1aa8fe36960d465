"""Reads against a PostgreSQL that accepts connections but never answers: a 503 `{"error"}` within QUERY_TIMEOUT
plus the client-side margin, never a hang; reads recover once it answers again.

The PostgreSQL is the test's own, frozen by SIGSTOP of every one of its processes (app/services.py
ServiceProcess); the session's PostgreSQL, which other tests use, is never touched. tests/faults/ holds the same
under load, with the worker's exit 70 after a long freeze.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from app.migrate import migrate
from app.services import Endpoints, ServiceStack
from app.settings import Settings
from tests.fixtures import Worker, eventually

QUERY_TIMEOUT = 2.0
MARGIN = Settings(query_timeout=QUERY_TIMEOUT).read_client_timeout - QUERY_TIMEOUT
SLACK = 3.0  # the scheduling of a loaded machine, on top of the bound the service promises
READS = (
    "/history?limit=5",
    "/history?format=ndjson",
    "/report",
    "/api/v2/alerts",
    "/alerts/0123456789abcdef/history",
    "/history?filter=" + "job%3D~%22x.%2A%22",  # a regex: checked by PostgreSQL first
)


@pytest.fixture(scope="module")
async def own_postgres(
    endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, ServiceStack]]:
    """A migrated PostgreSQL of this module's own: its URL and the stack that can freeze it."""
    stack = ServiceStack(
        workdir=tmp_path_factory.mktemp("own-postgres"), kafka_brokers=endpoints.kafka_brokers, want_redis=False
    )
    ep = await asyncio.to_thread(stack.start)
    try:
        await migrate(ep.database_url)
        yield ep.database_url, stack
    finally:
        await asyncio.to_thread(stack.stop)


async def timed_get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any, float]:
    began = time.monotonic()
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as r:
        body = await r.json(content_type=None) if r.content_type == "application/json" else await r.text()
        return r.status, body, time.monotonic() - began


async def test_reads_on_a_hung_postgresql_are_503_in_time_then_recover(
    own_postgres: tuple[str, ServiceStack], make_worker: Callable[..., Worker], http: aiohttp.ClientSession
) -> None:
    url, stack = own_postgres
    node = make_worker(pipeline_enabled=False, database_url=url, query_timeout=QUERY_TIMEOUT)
    try:
        await node.wait_ready(partitions=False)
        for path in READS:
            status, body, _ = await timed_get(http, node.url + path)
            assert status in (200, 404), (path, body)

        with stack.process("postgres").frozen():  # every process of its tree: backends are sessions of their own
            # More reads than the pool has connections (8): some wait for a connection, some for an answer.
            results = await asyncio.gather(*(timed_get(http, node.url + p) for p in READS * 3))
            health, _, health_s = await timed_get(http, node.url + "/healthz")

        bound = QUERY_TIMEOUT + MARGIN + SLACK
        for path, (status, body, elapsed) in zip(READS * 3, results, strict=True):
            assert status == 503, (path, status, body)
            assert "PostgreSQL" in body["error"] and "try again" in body["error"], body
            assert elapsed < bound, f"{path}: 503 after {elapsed:.1f} s, promised within {bound - SLACK:g} s"
        assert health == 200 and health_s < 1, health_s

        async def recovered() -> bool:
            statuses = [(await timed_get(http, node.url + p))[0] for p in READS]
            return all(s in (200, 404) for s in statuses)

        await eventually(recovered, timeout=30, what="reads answered again once PostgreSQL answers")
    finally:
        node.stop()
