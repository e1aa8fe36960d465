"""The service harness gives real, reachable servers."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.services import Endpoints, ServiceStack


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
