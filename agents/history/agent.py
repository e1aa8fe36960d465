"""The history agent: the topic's alert messages → deduplicated events in PostgreSQL, exactly once in effect.

Per batch of fetched chunks: holes (offsets the consumer skipped, read back) → decide (pure: ingest → dedup →
state → enrich) → dead letters and re-keyed copies produced → the writer stores it (PostgreSQL, then the
table, then the ack) while the next batch is decided. Expiry drops states no event can consult any more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import faust
from aiokafka.structs import ConsumerRecord

from agents import ingest, state
from agents.history.decider import Batch, Decider, Rules
from agents.history.expiry import Expiry
from agents.history.holes import HoleFiller
from agents.history.writer import Writer, batch_failed, leave_unacked
from app import metrics
from app.faust_adapter import ChunkSchema, RecordChunk
from app.produce import produce_all
from app.settings import Settings
from sinks.base import Sink
from tables import fingerprint_state

if TYPE_CHECKING:  # app.faust_app wires the agents
    from app.faust_app import AlertHistoryApp

log = logging.getLogger(__name__)

# A batch is at most this many chunks (one partition's records of one fetch, CHUNK_RECORDS at most): small
# when the topic is quiet, 4,000 records when there is a backlog.
BATCH_CHUNKS = 8
BATCH_WITHIN_S = 0.05
# Deciding yields to the event loop between slices, so the writer's PostgreSQL and Kafka replies get in: a
# whole batch is tens of ms of CPU. What the slices read stays the same (the writer's overlay stays consulted).
DECIDE_SLICE = 50


class HistoryAgent:
    def __init__(self, app: faust.App, settings: Settings, sink: Sink) -> None:
        self.app = app
        self.settings = settings
        self.sink = sink
        self.rules = Rules(
            window_ms=settings.dedup_window * 1000,
            flap=state.FlapRule(window_ms=settings.flap_window * 1000, threshold=settings.flap_threshold),
        )
        self.states = fingerprint_state.define(app, settings)
        self.writer = Writer(app, settings, sink, self.states, self._decide_again)
        self.expiry = Expiry(app, settings.topic, self.states, self.writer, self.rules.horizon_ms)
        self.holes = HoleFiller(settings.kafka_brokers or "", settings.topic)
        self._decider: Decider | None = None  # once the topic's code is known
        self._phase = {name: metrics.BATCH_PHASE_SECONDS.labels(name) for name in ("wait", "holes", "decide",
                                                                                  "produce", "previous")}  # fmt: skip
        self._batch_end: float | None = None

    async def process(self, events: Sequence[faust.types.EventT]) -> None:
        """One batch, in stage order; returns once the batch is handed to the writer."""
        started = t = time.perf_counter()
        if self._batch_end is not None:
            self._phase["wait"].inc(started - self._batch_end)
        records = _hold(events)
        decider = await self.decider()
        while True:
            applied = await self.writer.applied()
            filled = await self.holes.fill(records, applied)
            t = self._timed("holes", t)
            batch = await self._decide(decider, filled, applied)
            t = self._timed("decide", t)
            await produce_all(self.app, batch.out)
            t = self._timed("produce", t)
            settled = await self.writer.settled()
            t = self._timed("previous", t)
            if settled:
                break
            # The batch written meanwhile was dropped (another worker had it) or decided again: ours built on
            # its overlay. Decide again from what PostgreSQL and the table hold.
        self.writer.submit(batch, events, filled, started)
        self._batch_end = t

    async def decider(self) -> Decider:
        if self._decider is None:
            self._decider = Decider(
                self.rules,
                topic=self.settings.topic,
                dlq_topic=self.settings.dlq_topic,
                topic_code=await self.sink.topic_code(self.settings.topic),
                lookup=self.writer.lookup,
            )
        return self._decider

    async def _decide(self, decider: Decider, records: Sequence[ConsumerRecord], applied: Mapping[int, int]) -> Batch:
        batch = Batch()
        partitions = self.partitions()
        for i in range(0, len(records), DECIDE_SLICE):
            if i:
                await asyncio.sleep(0)
            decider.decide(
                batch, records[i : i + DECIDE_SLICE], applied=applied, partitions=partitions,
                refused=self.writer.refused,
            )  # fmt: skip
        _report(batch)
        return batch

    def _decide_again(self, records: Sequence[ConsumerRecord], applied: Mapping[int, int]) -> Batch:
        assert self._decider is not None
        batch = Batch()
        self._decider.decide(
            batch, records, applied=applied, partitions=self.partitions(), refused=self.writer.refused
        )
        return batch

    def partitions(self) -> int:
        return self.app.consumer.topic_partitions(self.settings.topic) or self.settings.partitions

    def _timed(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self._phase[phase].inc(now - since)
        return now


def _hold(events: Sequence[faust.types.EventT]) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    for ev in events:
        ev.message.incref()  # held past take_events' ack, until the writer has stored the batch
        chunk = cast(RecordChunk, ev.value)
        records.extend(chunk.records)
    return records


def _report(batch: Batch) -> None:
    for position, reason in batch.failures:
        log.error("deciding message %s/%s failed: %s", position.partition, position.offset, reason)
    if batch.dead_letters:
        metrics.DEAD_LETTERS.inc(batch.dead_letters)
        for m in batch.out:
            headers = dict(m.headers)
            if ingest.DLQ_REASON_HEADER in headers:
                reason, source = headers[ingest.DLQ_REASON_HEADER].decode(), headers[ingest.SOURCE_HEADER].decode()
                log.warning("message %s to dead-letter topic: %s", source, reason, extra={"source": source})
    if batch.rekeyed:
        metrics.REKEYED.inc(batch.rekeyed)


def wire(app: AlertHistoryApp, settings: Settings, sink: Sink) -> HistoryAgent:
    """Register the history agent, its table and its expiry timer on `app`."""
    history = HistoryAgent(app, settings, sink)
    # Delivered a fetched chunk of records per event (app/faust_adapter.py): the agent works in batches.
    app.chunked_topics = app.chunked_topics | {settings.topic}
    topic = app.topic(settings.topic, schema=ChunkSchema(), partitions=settings.partitions)

    @app.agent(topic, name="alert-history-pipeline")
    async def run(stream: faust.StreamT) -> None:
        # Messages are acked by the writer once stored, never by take_events (process holds a reference).
        async for events in cast(faust.Stream, stream).take_events(BATCH_CHUNKS, within=BATCH_WITHIN_S):
            try:
                await history.process(events)
            except asyncio.CancelledError:
                leave_unacked(events)
                raise
            except Exception as exc:
                batch_failed(app, events, exc)  # exits, unless the worker is stopping anyway
                return

    @app.timer(interval=history.expiry.interval_s, on_leader=False)
    async def expire_states() -> None:
        _, live = await history.expiry.run(int(time.time() * 1000))
        metrics.LIVE_FINGERPRINTS.set(live)

    app.on_partitions_revoked.connect(lambda *a, **kw: history.writer.forget_offsets())
    app.on_partitions_assigned.connect(lambda *a, **kw: history.writer.forget_offsets())
    return history
