"""Produce a set of messages and wait until the broker acknowledged every one (acks=all); the bridge's
back-pressure: what Kafka can never take, and how long and how many requests may wait on it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from app.errors import BrokerUnavailable
from app.faust_adapter import raw_producer, send_record_batches
from app.partition import key_partition

ACK_TIMEOUT_S = 15.0  # the pipeline's own messages (dead letters, re-keyed copies); the bridge has its setting
BUSY_RETRY_AFTER_S = 1  # a request refused because too many wait: the wait ends with the next acknowledgement


@dataclass(slots=True, frozen=True)
class OutMessage:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def message_size(message: OutMessage) -> int:
    """The size aiokafka's producer holds against its max_request_size (it refuses a larger message)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(message.key, message.value, list(message.headers)))


def max_message_size(app: faust.App) -> int:
    """The largest message the producer sends (Faust's producer_max_request_size, below Kafka's topic default)."""
    return int(app.conf.producer_max_request_size)


async def produce_all(app: faust.App, messages: Sequence[OutMessage], timeout_s: float = ACK_TIMEOUT_S) -> None:
    """All or an error: a caller that gets no exception may tell its client every message is safe. After an
    error some of them may still be stored (sent, not yet acknowledged): a resend of all is a duplicate of those."""
    if not messages:
        return
    await _acknowledged(_send_all(app, messages), timeout_s)


async def produce_batched(app: faust.App, messages: Sequence[OutMessage], timeout_s: float = ACK_TIMEOUT_S) -> None:
    """As `produce_all`, for a pass's many messages: each partition's as few record batches as fit, not one
    producer send each (a send per message cost more CPU than building the message). Messages with headers or
    an explicit partition, of a topic whose partitions are not known yet, or large enough to fill a record batch
    alone go through `produce_all` (with the rest, so the order per partition stays the topic's)."""
    if not messages:
        return
    producer = raw_producer(app)
    by_topic: dict[str, dict[int, list[tuple[bytes | None, bytes | None]]]] = {}
    counts: dict[str, int] = {}
    limit = int(app.conf.producer_max_batch_size) // 2
    for m in messages:
        count = counts.get(m.topic)
        if count is None:
            count = counts[m.topic] = len(producer.client.cluster.partitions_for_topic(m.topic) or ())
        if m.headers or m.partition is not None or m.key is None or not count or len(m.value) + len(m.key) > limit:
            await produce_all(app, messages, timeout_s)
            return
        by_topic.setdefault(m.topic, {}).setdefault(key_partition(m.key, count), []).append((m.key, m.value))

    async def send() -> None:
        for topic, by_partition in by_topic.items():
            await send_record_batches(producer, topic, by_partition)

    await _acknowledged(send(), timeout_s)


async def _acknowledged(sending: Coroutine[Any, Any, Any], timeout_s: float) -> None:
    retry_after = math.ceil(timeout_s)
    try:
        await asyncio.wait_for(sending, timeout_s)
    except (TimeoutError, OSError, ConnectionError) as exc:
        raise BrokerUnavailable(f"Kafka did not acknowledge within {timeout_s:g} s: {exc!r}", retry_after) from exc
    except Exception as exc:  # aiokafka's KafkaError family: broker-side refusal
        if type(exc).__module__.startswith(("aiokafka", "kafka")):
            raise BrokerUnavailable(f"Kafka refused the produce: {exc!r}", retry_after) from exc
        raise


class Bridge:
    """The webhook bridge's produce: a bounded wait, and at most `max_waiting` requests waiting on Kafka at once.
    A request past that is refused at once (503, Retry-After), not queued: senders retry, and a stalled Kafka
    does not pile up requests (and their bodies) in the web node."""

    def __init__(self, app: faust.App, timeout_s: float, max_waiting: int) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.max_waiting = max_waiting
        self.waiting = 0

    async def produce(self, messages: Sequence[OutMessage]) -> None:
        if self.waiting >= self.max_waiting:
            raise BrokerUnavailable(
                f"Kafka is slow: {self.waiting} requests already wait on it (ALERT_HISTORY_PRODUCE_MAX_WAITING); "
                "nothing of this one was produced",
                BUSY_RETRY_AFTER_S,
            )
        self.waiting += 1
        try:
            await produce_all(self.app, messages, self.timeout_s)
        finally:
            self.waiting -= 1


def bridge(app: Any) -> Bridge:
    """The app's bridge, made on first use from its settings."""
    found: Bridge | None = app.__dict__.get("_bridge")
    if found is None:
        settings = app.settings
        found = app.__dict__["_bridge"] = Bridge(app, settings.produce_timeout, settings.produce_max_waiting)
    return found


async def _send_all(app: faust.App, messages: Sequence[OutMessage]) -> None:
    # aiokafka's producer under Faust's: one send per message, so concurrent requests share record batches.
    producer = raw_producer(app)
    cluster = producer.client.cluster
    sent: list[asyncio.Future[Any]] = []
    last: dict[tuple[str, int], asyncio.Future[Any]] = {}
    for m in messages:
        partition = m.partition
        if partition is None and m.key is not None:
            # The default partitioner's choice, murmur2 cached: the same fingerprints are sent all day.
            count = len(cluster.partitions_for_topic(m.topic) or ())
            partition = key_partition(m.key, count) if count else None
        fut = await producer.send(m.topic, m.value, key=m.key, partition=partition, headers=list(m.headers) or None)
        sent.append(fut)
        if partition is not None:
            last[(m.topic, partition)] = fut
    # A partition's record batches are acknowledged in order (one in flight at a time): once the last message
    # of each partition is, the ones before it are done too. Each is checked; any not done is awaited.
    await asyncio.gather(*(last.values() or sent))
    pending = [f for f in sent if not f.done()]
    if pending:
        await asyncio.gather(*pending)
    for f in sent:
        f.result()  # raises the error of a batch the broker refused
