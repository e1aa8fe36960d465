"""Fault fixtures: services of a test's own, to freeze and kill without touching the session's, and workers on them.

The session's Kafka, PostgreSQL and Redis serve every other test: a fault test never signals them. It starts the
service it will hurt (`own_services(kafka_nodes=3)`, `own_services(postgres=True)`, …) and takes the others from the
session; its workers are stopped when it ends, before its services.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from app.migrate import migrate
from app.services import Endpoints, ServiceStack
from tests.faults.load import LINES
from tests.fixtures import Worker

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LINES:
        terminalreporter.section("faults: sent, 2xx, stored, lost, duplicated, 5xx, 503 per scenario")
        for line in LINES:
            terminalreporter.write_line(line)


@dataclasses.dataclass
class OwnServices:
    """The services a fault test started for itself, and the endpoints its workers use (the rest the session's)."""

    stack: ServiceStack
    endpoints: Endpoints


@pytest.fixture
def own_services(endpoints: Endpoints, tmp_path: Path) -> Iterator[Callable[..., Awaitable[OwnServices]]]:
    """Factory: await own_services(kafka_nodes=0, postgres=False, redis=False) → those started for this test
    (PostgreSQL migrated); kafka_nodes=1 is one broker, 3 a cluster."""
    stacks: list[ServiceStack] = []

    async def start(*, kafka_nodes: int = 0, postgres: bool = False, redis: bool = False) -> OwnServices:
        stack = ServiceStack(
            workdir=tmp_path / f"services-{len(stacks)}",
            kafka_brokers=None if kafka_nodes else endpoints.kafka_brokers,
            kafka_nodes=max(1, kafka_nodes),
            database_url=None if postgres else endpoints.database_url,
            redis_url=None if redis else endpoints.redis_url,
            want_redis=redis,
        )
        stacks.append(stack)
        ep = await asyncio.to_thread(stack.start)
        if postgres:
            await migrate(ep.database_url)
        if redis and ep.redis_url is None:
            raise AssertionError("redis-server did not start: the Redis fault test needs its own")
        return OwnServices(stack, ep)

    yield start
    for stack in stacks:
        stack.stop()


@pytest.fixture
def fault_workers(
    own_services: Callable[..., Awaitable[OwnServices]], make_worker: Callable[..., Worker]
) -> Iterator[Callable[..., Worker]]:
    """Factory: fault_workers(endpoints, **settings) → a started Worker on them, stopped (thawed first) when the
    test ends, before the test's own services stop under it."""
    made: list[Worker] = []

    def make(endpoints: Endpoints, **settings: object) -> Worker:
        worker = make_worker(endpoints=endpoints, log_level="INFO", **settings)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.process.thaw()
        worker.stop()


@pytest.fixture
async def pool_for() -> AsyncIterator[Callable[[Endpoints], Awaitable[asyncpg.Pool]]]:
    """pool_for(endpoints) → an asyncpg pool on that PostgreSQL (closed at the end), to read back what was stored."""
    pools: list[asyncpg.Pool] = []

    async def connect(ep: Endpoints) -> asyncpg.Pool:
        pool = await asyncpg.create_pool(ep.database_url, min_size=1, max_size=2)
        pools.append(pool)
        return pool

    yield connect
    for pool in pools:
        pool.terminate()  # its server may be the test's own, already stopped
