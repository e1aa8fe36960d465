"""The history agent's writer: stores one decided batch at a time, while the agent decides the next.

It alone owns what is stored: PostgreSQL's offsets (the next offset per partition whose effect is stored), the
offsets decided (those plus the batch being written), the batch's overlay until the table has it, acking the
batch's messages, and exiting 70 when a batch cannot be stored. Per batch, in this order:
  1. rows, counters and the next offsets in one PostgreSQL transaction (Sink.write);
  2. one message per new row on the events topic, acknowledged by Kafka;
  3. the states into the table, their changelog acknowledged by Kafka;
  4. only then the messages acked to Kafka.
A crash anywhere leaves PostgreSQL at a batch boundary and the table at or behind it; replay from the committed
Kafka offset re-derives the same states, because decisions are pure and the clock is the message timestamp.
A crash before 3 replays the batch's messages against the states before it, so their new rows are decided again
(not stored again: PostgreSQL has them) and their events sent again: an event can repeat, never go missing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence

import faust
import orjson
from aiokafka.structs import ConsumerRecord

from agents.history.decider import Batch, dead_letter
from app import events, metrics
from app.faust_adapter import raw_producer, send_record_batches
from app.partition import key_partition
from app.produce import produce_all
from app.records import NEW_ROW, FingerprintState
from app.settings import Settings
from sinks.base import RowsRejected, Sink, StaleBatch
from tables.fingerprint_state import FingerprintStates

log = logging.getLogger(__name__)

EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: the supervisor (systemd, Kubernetes, compose) restarts us
REFUSAL_ROUNDS = 3  # each round finds every row refused alone: a second one is already unusual

# Decides the records again from these offsets, skipping the refused messages: the agent's decider.
DecideAgain = Callable[[Sequence[ConsumerRecord], Mapping[int, int]], Batch]


class Writer:
    def __init__(
        self, app: faust.App, settings: Settings, sink: Sink, states: FingerprintStates, decide_again: DecideAgain
    ) -> None:
        self.app = app
        self.topic = settings.topic
        self.dlq_topic = settings.dlq_topic
        self.events_topic = settings.events_topic if settings.events_enabled else None
        self.sink = sink
        self.states = states
        self.decide_again = decide_again
        self.stored: dict[int, int] | None = None  # None: unknown (start, rebalance, a batch dropped)
        self.decided: dict[int, int] = {}
        self.refused: dict[tuple[int, int], str] = {}  # PostgreSQL refused their rows: (partition, offset) → why
        self.clock: dict[int, int] = {}  # partition → newest message time stored: its stream time
        self._pending: dict[str, FingerprintState | None] = {}  # the overlay of the batch being written
        self._task: asyncio.Task[None] | None = None
        self._sink_time = metrics.BATCH_PHASE_SECONDS.labels("sink")
        self._state_time = metrics.BATCH_PHASE_SECONDS.labels("state")
        self._events_time = metrics.BATCH_PHASE_SECONDS.labels("events")

    def lookup(self, fingerprint: str, partition: int) -> FingerprintState | None:
        """A state as the next batch must see it: the batch being written, then the table."""
        pending = self._pending
        return pending[fingerprint] if fingerprint in pending else self.states.get(fingerprint, partition)

    def forget_offsets(self) -> None:
        """A rebalance: what this worker stored may be behind PostgreSQL now."""
        self.stored = None

    async def applied(self) -> Mapping[int, int]:
        """Per partition, the next offset whose effect is neither stored nor being stored: where deciding starts."""
        if self.stored is None:
            await self.drain()
            self.stored = await self.sink.committed_offsets(self.topic)
            self.decided = dict(self.stored)
            self.refused = await self.sink.refused_messages(self.topic)
        return self.decided

    async def settled(self) -> bool:
        """Wait for the batch being written. False: it was dropped or decided again, so the batch decided
        meanwhile built on an overlay that is not what was stored, and must be decided again."""
        await self.drain()
        return self.stored is not None

    async def drain(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)
            self._task = None

    def submit(
        self, batch: Batch, events: Sequence[faust.types.EventT], records: Sequence[ConsumerRecord], started: float
    ) -> None:
        """Store the batch in the background; its messages are acked once it is (the agent holds them till then)."""
        for partition, offset in batch.next_offsets.items():  # a replay after a restart starts below them
            self.decided[partition] = max(offset, self.decided.get(partition, 0))
        self._pending = batch.overlay
        self._task = asyncio.create_task(self._store(batch, events, records, started))

    async def _store(
        self, batch: Batch, events: Sequence[faust.types.EventT], records: Sequence[ConsumerRecord], started: float
    ) -> None:
        t = time.perf_counter()
        try:
            batch, decided_again = await self._write_rows(batch, records)
            t, then = time.perf_counter(), t
            self._sink_time.inc(t - then)
            await self._send_events(batch)
            t, then = time.perf_counter(), t
            self._events_time.inc(t - then)
            # Acked below. Its table state must be in the changelog by then: a worker taking these
            # partitions over restores from the changelog and starts after the acked offset.
            await self.states.write(
                {(fp, batch.partition[fp]): st for fp, st in batch.overlay.items() if st is not None}
            )
            self._state_time.inc(time.perf_counter() - t)
        except StaleBatch as exc:
            log.warning("batch dropped: %s (another worker owns these partitions now)", exc)
            self.stored = None
            _ack(events)
            return
        except BaseException as exc:
            batch_failed(self.app, events, exc)
            return
        finally:
            self._pending = {}  # in the table now, or not to be built on
        _ack(events)
        if decided_again:
            self.stored = None  # the batch decided meanwhile built on the refused rows
        elif self.stored is not None:
            for partition, offset in batch.next_offsets.items():
                self.stored[partition] = max(offset, self.stored.get(partition, 0))
        for partition, ts in batch.newest.items():
            self.clock[partition] = max(ts, self.clock.get(partition, 0))
        _count(batch, len(records), started)

    async def _send_events(self, batch: Batch) -> None:
        """The batch's new rows, as the events they are, on the events topic (key: the fingerprint)."""
        if self.events_topic is None:
            return
        count = len(raw_producer(self.app).client.cluster.partitions_for_topic(self.events_topic) or ())
        by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        for o in (*batch.outcomes, *batch.replayed):
            if o.decision in NEW_ROW:
                key = o.fingerprint.encode()
                partition = key_partition(key, count) if count else o.position.partition
                by_partition.setdefault(partition, []).append((key, orjson.dumps(events.from_outcome(o))))
        if by_partition:
            await send_record_batches(raw_producer(self.app), self.events_topic, by_partition)
            metrics.EVENTS_PUBLISHED.inc(sum(len(v) for v in by_partition.values()))

    async def _write_rows(self, batch: Batch, records: Sequence[ConsumerRecord]) -> tuple[Batch, bool]:
        """Store the batch. If PostgreSQL refuses some of its rows for their data (nothing can pass them later
        either), their messages go to the dead-letter topic, are recorded as refused, and the batch is decided
        again without them, from PostgreSQL's offsets and the table, then stored. Returns the batch stored and
        whether it was decided again."""
        try:
            await self.sink.write(self.topic, batch.outcomes, batch.next_offsets)
            return batch, False
        except RowsRejected as exc:
            refused = exc
        by_position = {(r.partition, r.offset): r for r in records}
        for _ in range(REFUSAL_ROUNDS):
            found = await self.sink.rejected(self.topic, batch.outcomes, batch.next_offsets)
            if not found:
                raise refused  # no row is at fault alone: not something dead-lettering can fix
            now = {(o.position.partition, o.position.offset): reason for o, reason in found}
            await self.sink.refuse(self.topic, now)  # first: a crash from here on replays the batch without them
            self.refused.update(now)
            letters = [
                dead_letter(self.dlq_topic, by_position[at], f"PostgreSQL refused it: {why}") for at, why in now.items()
            ]
            await produce_all(self.app, letters)
            metrics.DEAD_LETTERS.inc(len(letters))
            self._pending = {}  # decided again from the table, as if the refused messages had never come
            batch = self.decide_again(records, await self.sink.committed_offsets(self.topic))
            try:
                await self.sink.write(self.topic, batch.outcomes, batch.next_offsets)
                return batch, True
            except RowsRejected as exc:
                refused = exc
        raise refused


def _count(batch: Batch, size: int, started: float) -> None:
    for decision, n in batch.decisions.items():
        metrics.EVENTS.labels(decision.value).inc(n)
    metrics.RESENDS.inc(batch.resends)
    metrics.BATCH_SIZE.observe(size)
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "batch of %d stored: next offsets %s, decisions %s, %d new rows",
            size, dict(batch.next_offsets), dict(batch.decisions), sum(o.decision in NEW_ROW for o in batch.outcomes),
        )  # fmt: skip


def _ack(events: Sequence[faust.types.EventT]) -> None:
    for event in events:
        event.ack()


def leave_unacked(events: Sequence[faust.types.EventT]) -> None:
    """Stopping mid-batch: mark the messages done without acking them, so their offsets are not committed and the
    next owner replays them."""
    for event in events:
        event.message.acked = True


def batch_failed(app: faust.App, events: Sequence[faust.types.EventT], exc: BaseException) -> None:
    leave_unacked(events)
    if isinstance(exc, asyncio.CancelledError) or app.should_stop:
        # e.g. the producer already stopped under us: not a failure of the batch
        log.warning("worker stopping mid-batch: the batch stays unacked and will be replayed")
        return
    # Carrying on would ack a batch PostgreSQL does not hold, or a table behind it. Exit instead:
    # the restarted worker replays from the committed offset and loses nothing.
    log.critical("pipeline batch failed; exiting so a restart replays it", exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)

