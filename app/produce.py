"""Produce a set of messages and wait until the broker acknowledged every one (acks=all)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import faust

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

    async def send_all() -> None:
        pending = [
            await app.producer.send(m.topic, m.key, m.value, m.partition, None, list(m.headers) or None)
            for m in messages
        ]
        await asyncio.gather(*pending)

    try:
        await asyncio.wait_for(send_all(), timeout_s)
    except (TimeoutError, OSError, ConnectionError) as exc:
        raise BrokerUnavailable(f"Kafka did not acknowledge within {timeout_s:.0f}s: {exc!r}") from exc
    except Exception as exc:  # aiokafka's KafkaError family: broker-side refusal
        if type(exc).__module__.startswith(("aiokafka", "kafka")):
            raise BrokerUnavailable(f"Kafka refused the produce: {exc!r}") from exc
        raise
