"""Create the ingest and dead-letter topics when absent (the contract's names and partition count); read their ends."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.retry import retry
from app.settings import Settings

log = logging.getLogger(__name__)

# The broker's clock stamps each message: dedup windows then ignore producer clock skew, and a
# replay sees the same timestamps it saw the first time.
TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


async def ensure_topics(settings: Settings, replication_factor: int = 1) -> dict[str, int]:
    """Returns the partition count of each topic as it is on the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_brokers, client_id=f"{settings.app_id}-admin")
    await retry("connect to Kafka", admin.start, retryable=lambda e: True, deadline_s=60)
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.topic, settings.dlq_topic]
        missing = [
            NewTopic(name, settings.partitions, replication_factor, topic_configs=TOPIC_CONFIG)
            for name in wanted
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another worker created it between our list and create
            log.info("created topics %s", [t.name for t in missing])
        described = await admin.describe_topics(wanted)
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        if counts.get(settings.topic, settings.partitions) != settings.partitions:
            log.warning(
                "topic %s has %d partitions, ALERT_HISTORY_PARTITIONS says %d; using the topic's",
                settings.topic,
                counts[settings.topic],
                settings.partitions,
            )
        return counts
    finally:
        await admin.close()


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
