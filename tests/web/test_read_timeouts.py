"""Reads against a PostgreSQL that accepts connections but never answers: a 503 `{"error"}` within QUERY_TIMEOUT
plus the client-side margin, never a hang; reads recover once it answers again.

The PostgreSQL is the test's own, frozen by SIGSTOP of every one of its processes (each backend is a session
leader of its own, so stopping the postmaster's process group would leave the pooled connections answering);
the session's PostgreSQL, which other tests use, is never touched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
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


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, parents before children (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo += children.get(pid, [])
    return out


@contextmanager
def frozen(root: int) -> Iterator[None]:
    """Every process of the tree stopped (the postmaster first: it forks no new backend meanwhile)."""
    pids = process_tree(root)
    assert len(pids) > 3, pids  # runuser or the postmaster, its auxiliary processes, the node's backends
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
async def own_postgres(
    endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, int]]:
    """A migrated PostgreSQL of this module's own: its URL and the pid of the process ServiceStack started."""
    stack = ServiceStack(
        workdir=tmp_path_factory.mktemp("own-postgres"), kafka_brokers=endpoints.kafka_brokers, want_redis=False
    )
    ep = await asyncio.to_thread(stack.start)
    try:
        await migrate(ep.database_url)
        ((proc, _),) = stack._procs  # the one process it started; ServiceStack exposes no accessor for it
        yield ep.database_url, proc.pid
    finally:
        await asyncio.to_thread(stack.stop)


async def timed_get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any, float]:
    began = time.monotonic()
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as r:
        body = await r.json(content_type=None) if r.content_type == "application/json" else await r.text()
        return r.status, body, time.monotonic() - began


async def test_reads_on_a_hung_postgresql_are_503_in_time_then_recover(
    own_postgres: tuple[str, int], make_worker: Callable[..., Worker], http: aiohttp.ClientSession
) -> None:
    url, postgres_pid = own_postgres
    node = make_worker(pipeline_enabled=False, database_url=url, query_timeout=QUERY_TIMEOUT)
    try:
        await node.wait_ready(partitions=False)
        for path in READS:
            status, body, _ = await timed_get(http, node.url + path)
            assert status in (200, 404), (path, body)

        with frozen(postgres_pid):
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
