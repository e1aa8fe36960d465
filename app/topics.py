"""Create the ingest and dead-letter topics when absent (the contract's names and partition count); read their ends.

On a cluster every topic the project creates is kept on three brokers, and a produce with acks=all is only
acknowledged once two of them hold it: losing any one broker loses no acknowledged message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.errors import AlertHistoryError
from app.retry import retry
from app.settings import Settings

log = logging.getLogger(__name__)

# The broker's clock stamps each message: dedup windows then ignore producer clock skew, and a
# replay sees the same timestamps it saw the first time.
TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


@dataclass(frozen=True, slots=True)
class Replication:
    """How many brokers keep each partition, and how many must hold a message before acks=all answers."""

    factor: int
    min_insync: int

    @classmethod
    def for_cluster(cls, brokers: int) -> Replication:
        factor = min(3, max(1, brokers))
        return cls(factor, 2 if factor == 3 else 1)

    @property
    def topic_config(self) -> dict[str, str]:
        return {"min.insync.replicas": str(self.min_insync)}


@asynccontextmanager
async def _admin(brokers: str | None, client_id: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers, client_id=client_id)
    await retry("connect to Kafka", admin.start, retryable=lambda e: True, deadline_s=60)
    try:
        yield admin
    finally:
        await admin.close()


async def _replication(admin: AIOKafkaAdminClient) -> Replication:
    return Replication.for_cluster(len((await admin.describe_cluster())["brokers"]))


async def cluster_replication(brokers: str) -> Replication:
    """The replication for the cluster at `brokers` (a bootstrap list), from the brokers its metadata lists."""
    async with _admin(brokers, "alert-history-admin") as admin:
        return await _replication(admin)


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Returns the partition count of each topic as it is on the broker."""
    async with _admin(settings.kafka_brokers, f"{settings.app_id}-admin") as admin:
        replication = await _replication(admin)
        config = {**TOPIC_CONFIG, **replication.topic_config}
        wanted = list(settings.topics)
        partitions = settings.partitions
        # The main topic first: the others take its partition count, so a fingerprint's messages sit on the same
        # partition number in each, even where an operator created the main topic with another count.
        for names in ([settings.topic], wanted[1:]):
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(name, partitions, replication.factor, topic_configs=config)
                for name in names
                if name not in existing
            ]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass  # another worker created it between our list and create
                log.info("created topics %s, each on %d brokers", [t.name for t in missing], replication.factor)
            partitions = (await _partition_counts(admin, [settings.topic]))[settings.topic]
        counts = await _partition_counts(admin, wanted)
        if counts.get(settings.topic, settings.partitions) != settings.partitions:
            log.warning(
                "topic %s has %d partitions, ALERT_HISTORY_PARTITIONS says %d; using the topic's",
                settings.topic,
                counts[settings.topic],
                settings.partitions,
            )
        return counts


class _NotDescribedYet(AlertHistoryError):
    """A topic just created is not in the metadata of the broker asked yet (a cluster's brokers learn it in turn)."""


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    async def described() -> dict[str, int]:
        counts = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(topics)}
        if not all(counts.get(t) for t in topics):
            raise _NotDescribedYet(f"partitions of {topics}: {counts}")
        return counts

    what = "describe the topics (a cluster's brokers learn a new one in turn)"
    return await retry(what, described, retryable=lambda e: isinstance(e, _NotDescribedYet), deadline_s=30)


async def end_offsets(brokers: str, topic: str) -> dict[int, int]:
    """partition → offset the next message will get."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, enable_auto_commit=False)  # no group: no join
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()
