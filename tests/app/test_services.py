"""The service harness gives real, reachable servers."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.services import Endpoints, ServiceError, ServiceStack
from app.topics import Replication
from tests.fixtures import eventually


async def test_kafka_round_trip(endpoints: Endpoints) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka_brokers, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait("harness-check", b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "harness-check", bootstrap_servers=endpoints.kafka_brokers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        got = await consumer.getone()
    finally:
        await consumer.stop()
    assert (got.key, got.value, got.partition) == (b"k", b"hello", meta.partition)


async def test_postgres_is_15_or_newer_and_migrated(endpoints: Endpoints) -> None:
    conn = await asyncpg.connect(endpoints.database_url)
    try:
        assert int(await conn.fetchval("SHOW server_version_num")) >= 150000
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 1
    finally:
        await conn.close()


async def test_redis_answers(endpoints: Endpoints) -> None:
    assert endpoints.redis_url, "Debian's redis-server is installed by bootstrap; it must start"
    client = aioredis.from_url(endpoints.redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_given_endpoints_are_used_as_they_are(endpoints: Endpoints) -> None:
    stack = ServiceStack(
        kafka_brokers=endpoints.kafka_brokers,
        database_url=endpoints.database_url,
        redis_url=endpoints.redis_url,
    )
    with stack as again:
        assert again == endpoints
        assert stack.timings == {}  # nothing was started


@pytest.mark.parametrize(
    ("brokers", "factor", "min_insync"),
    [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)],
)
def test_replication_follows_the_cluster_size(brokers: int, factor: int, min_insync: int) -> None:
    assert Replication.for_cluster(brokers) == Replication(factor, min_insync)


async def test_a_frozen_postgres_stops_every_one_of_its_processes_and_thaws(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """A backend leads a process group of its own: freezing only the postmaster's would leave it answering."""
    stack = ServiceStack(
        workdir=tmp_path, kafka_brokers=endpoints.kafka_brokers, redis_url=endpoints.redis_url, want_redis=False
    )
    with stack as own:
        conn = await asyncpg.connect(own.database_url)
        try:
            postgres = stack.process("postgres")
            tree = [psutil.Process(postgres.proc.pid), *psutil.Process(postgres.proc.pid).children(recursive=True)]
            backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
            assert backend in tree and os.getpgid(backend.pid) != os.getpgid(postgres.proc.pid)
            with postgres.frozen():
                assert {p.status() for p in tree if p.is_running()} == {psutil.STATUS_STOPPED}
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        postgres.kill()
        assert not postgres.alive

        async def all_dead() -> bool:
            return all(_dead(p) for p in tree)

        await eventually(all_dead, what=f"every process of {tree} gone")


def _dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # killed; reaped by whoever inherited it
    except psutil.NoSuchProcess:
        return True


def test_process_names_what_the_stack_started(endpoints: Endpoints, tmp_path: Path) -> None:
    stack = ServiceStack(workdir=tmp_path, kafka_brokers=endpoints.kafka_brokers, database_url=endpoints.database_url)
    with stack:
        redis = stack.process("redis")
        assert redis.alive
        with pytest.raises(ServiceError, match=r"no kafka node 1 \(started: redis node 1\)"):
            stack.process("kafka")
        redis.kill()
        assert not redis.alive
        with pytest.raises(ServiceError, match="not running"):
            redis.freeze()


def test_kafka_nodes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_HISTORY_KAFKA_NODES", "3")
    assert ServiceStack.from_env().kafka_nodes == 3
    monkeypatch.setenv("ALERT_HISTORY_KAFKA_NODES", "0")
    with pytest.raises(ServiceError, match="ALERT_HISTORY_KAFKA_NODES"):
        ServiceStack.from_env()
    monkeypatch.delenv("ALERT_HISTORY_KAFKA_NODES")
    assert ServiceStack.from_env().kafka_nodes == 1
