"""With no target configured, the publish agent reads the notify topic a fetched chunk at a time and only acks it:
its consumer group's committed offsets reach the end of what was produced, an unreadable message included (it is
not decoded, so not dead-lettered either, as before)."""

from __future__ import annotations

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from app.topics import end_offsets
from tests.agents.publish.targets import notify
from tests.fixtures import Worker, eventually, unique


async def test_without_targets_the_notify_topic_is_acked_to_its_end(worker: Worker) -> None:
    topic = f"{worker.topic}-notify"
    run = unique()
    brokers = worker.endpoints.kafka_brokers
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all")
    await producer.start()
    try:
        for k in range(60):
            m = notify({"alertname": "NoTarget", "run": run, "k": str(k)})
            await producer.send_and_wait(topic, orjson.dumps(m), key=m["event"]["fingerprint"].encode())
        await producer.send_and_wait(topic, b"not a notify message", key=b"unreadable")
    finally:
        await producer.stop()
    ends = {p: end for p, end in (await end_offsets(brokers, topic)).items() if end > 0}
    assert sum(ends.values()) >= 61
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:

        async def committed() -> dict[int, int] | None:
            offsets = await admin.list_consumer_group_offsets(worker.env["ALERT_HISTORY_APP_ID"])
            got = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
            return got if all(got.get(p, -1) >= end for p, end in ends.items()) else None

        await eventually(committed, timeout=60, what="the notify topic's offsets committed to its end")
    finally:
        await admin.close()
    dlq = await end_offsets(brokers, f"{worker.topic}-notify-dlq")
    assert sum(dlq.values()) == 0
