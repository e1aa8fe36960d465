"""Stage 0 — holes: every offset of a partition is processed, in order, whatever the consumer delivered.

Faust's consumer can drop a message it was handing to a stream when a rebalance suspends the flow
(it advances its read offset anyway), and a worker can start past what PostgreSQL holds. Offsets
of a partition must follow on from PostgreSQL's next offset and from each other; a hole is read
straight from Kafka with a plain consumer of our own (no group, no seek on Faust's consumer, whose
fetcher runs in another thread) and spliced into the batch where it belongs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from app import metrics

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 30.0


def find_holes(records: Sequence[ConsumerRecord], stored: Mapping[int, int]) -> dict[int, tuple[int, int]]:
    """partition → (first missing offset, offset delivered instead), for the first hole of each partition."""
    holes: dict[int, tuple[int, int]] = {}
    last: dict[int, int] = {}
    for r in records:
        p, o = r.partition, r.offset
        # A partition PostgreSQL holds nothing of starts at 0: a worker that consumed (and committed in
        # Kafka) part of it but left before storing anything must not make the next owner skip that part.
        want = last[p] + 1 if p in last else stored.get(p, 0)
        if p not in holes and o > want:
            holes[p] = (want, o)
        last[p] = max(o, last.get(p, o))
    return holes


class HoleFiller:
    def __init__(self, brokers: str, topic: str) -> None:
        self._brokers = brokers
        self._topic = topic
        self._consumer: AIOKafkaConsumer | None = None

    async def fill(self, records: Sequence[ConsumerRecord], stored: Mapping[int, int]) -> Sequence[ConsumerRecord]:
        holes = find_holes(records, stored)
        if not holes:
            return records
        filled: dict[int, list[ConsumerRecord]] = {}
        for p, (missing, found) in holes.items():
            # Bounded as a whole: a hole we cannot read fails the batch (it stays unacked) rather than hang.
            read = await asyncio.wait_for(self._read(p, missing, found), READ_TIMEOUT_S)
            log.warning(
                "%s[%d]: offsets %d..%d were not delivered by the consumer; read %d of them from Kafka",
                self._topic, p, missing, found - 1, len(read),
            )  # fmt: skip
            metrics.HOLES_FILLED.inc(len(read))
            filled[p] = read
        out: list[ConsumerRecord] = []
        for r in records:
            p = r.partition
            if p in filled and r.offset >= holes[p][1]:
                out.extend(filled.pop(p))  # in front of the first record after the hole
            out.append(r)
        return out

    async def _read(self, partition: int, start: int, end: int) -> list[ConsumerRecord]:
        consumer = await self._ensure()
        tp = TopicPartition(self._topic, partition)
        consumer.assign([tp])
        earliest = (await consumer.beginning_offsets([tp]))[tp]
        if earliest > start:
            log.error("%s[%d]: offsets %d..%d were deleted by Kafka before they were stored",
                      self._topic, partition, start, earliest - 1)  # fmt: skip
            start = earliest
        consumer.seek(tp, start)
        out: list[ConsumerRecord] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            out.extend(r for r in batch.get(tp, []) if r.offset < end)
        return out

    async def _ensure(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self._brokers, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
            )
            await self._consumer.start()
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
