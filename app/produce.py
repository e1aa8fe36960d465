"""Produce a set of messages and wait until the broker acknowledged every one (acks=all)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust

from agents.ingest import key_partition
from app.errors import BrokerUnavailable

ACK_TIMEOUT_S = 15.0


@dataclass(slots=True, frozen=True)
class OutMessage:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


async def produce_all(app: faust.App, messages: Sequence[OutMessage], timeout_s: float = ACK_TIMEOUT_S) -> None:
    """All or an error: a caller that gets no exception may tell its client every message is safe."""
    if not messages:
        return
    try:
        await asyncio.wait_for(_send_all(app, messages), timeout_s)
    except (TimeoutError, OSError, ConnectionError) as exc:
        raise BrokerUnavailable(f"Kafka did not acknowledge within {timeout_s:.0f}s: {exc!r}") from exc
    except Exception as exc:  # aiokafka's KafkaError family: broker-side refusal
        if type(exc).__module__.startswith(("aiokafka", "kafka")):
            raise BrokerUnavailable(f"Kafka refused the produce: {exc!r}") from exc
        raise


async def _send_all(app: faust.App, messages: Sequence[OutMessage]) -> None:
    # aiokafka's producer under Faust's: one send per message, so concurrent requests share record batches.
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
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
