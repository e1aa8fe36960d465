"""What a fault test asks a Kafka cluster: who leads a partition, and how each topic is replicated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType


@asynccontextmanager
async def admin(brokers: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=brokers, client_id="faults-admin")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def partition_leader(brokers: str, topic: str, partition: int) -> int:
    """The node id of the broker leading `topic`'s `partition` now, from the cluster's metadata."""
    async with admin(brokers) as client:
        (described,) = await client.describe_topics([topic])
    leaders = {p["partition"]: p["leader"] for p in described["partitions"]}
    assert leaders.get(partition, -1) >= 0, f"{topic}/{partition} has no leader: {described}"
    return leaders[partition]


@dataclass(frozen=True)
class TopicReplication:
    replicas: int  # the fewest replicas any partition has
    in_sync: int  # the fewest in-sync replicas any partition has
    min_insync: int  # the topic's min.insync.replicas


async def replication(brokers: str, topics: list[str]) -> dict[str, TopicReplication]:
    async with admin(brokers) as client:
        described = await client.describe_topics(topics)
        resources = [ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None}) for t in topics]
        responses = await client.describe_configs(resources)
    min_insync = {
        resource[3]: int(entry[1])
        for response in responses
        for resource in response.resources
        for entry in resource[4]
        if entry[0] == "min.insync.replicas"
    }
    return {
        d["topic"]: TopicReplication(
            replicas=min((len(p["replicas"]) for p in d["partitions"]), default=0),
            in_sync=min((len(p["isr"]) for p in d["partitions"]), default=0),
            min_insync=min_insync.get(d["topic"], 0),
        )
        for d in described
    }
