"""The pipeline, in order: ingest → dedup → state → enrich → sink. One batch at a time.

Exactly-once in effect, with at-least-once Kafka:
  1. every message is decided against the table state plus this batch's overlay;
  2. dead letters and re-keyed copies are acknowledged by Kafka;
  3. rows, counters and the next offset of each partition are committed in one PostgreSQL
     transaction (messages below the stored offset only replay their effect on the state);
  4. only then is the overlay written to the table (changelog) and the batch acked to Kafka.
A crash anywhere leaves PostgreSQL at a batch boundary and the table at or behind it; replay
from the committed Kafka offset re-derives the same state, because decisions are pure and the
clock is the message timestamp.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import faust
from aiokafka.structs import ConsumerRecord

from agents import dedup, enrich, ingest, state
from agents.holes import HoleFiller
from app import metrics
from app.consumer import ChunkSchema, RecordChunk
from app.produce import OutMessage, produce_all
from app.records import NEW_ROW, AlertEvent, Decision, FingerprintState, Outcome, Position
from app.settings import Settings
from sinks.base import RowsRejected, Sink, StaleBatch
from tables import fingerprint_state
from tables.fingerprint_state import FingerprintStates

log = logging.getLogger(__name__)

# A batch is at most this many chunks (one partition's records of one fetch, CHUNK_RECORDS at most): small
# when the topic is quiet, 4,000 records when there is a backlog.
BATCH_CHUNKS = 8
BATCH_WITHIN_S = 0.05
DECIDE_SLICE = 50
# How far the broker's clock (LogAppendTime) may lag this worker's: expiry by the wall clock keeps this margin.
CLOCK_SKEW_MS = 60_000
EXPIRE_CHUNK = 10_000
PHASES = ("wait", "holes", "decide", "produce", "previous", "sink", "state")
EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: the supervisor (systemd, Kubernetes, compose) restarts us
MAX_REASON = 1000  # characters of an exception's text in a dead letter's reason header


@dataclass
class Batch:
    """What one pass over a batch of messages produced."""

    outcomes: list[Outcome] = field(default_factory=list)
    out: list[OutMessage] = field(default_factory=list)  # dead letters and re-keyed copies
    overlay: dict[str, FingerprintState | None] = field(default_factory=dict)
    partition: dict[str, int] = field(default_factory=dict)  # of each fingerprint looked up
    looked_up: dict[str, FingerprintState | None] = field(default_factory=dict)  # states read, not yet advanced
    next_offsets: dict[int, int] = field(default_factory=dict)
    newest: dict[int, int] = field(default_factory=dict)  # partition → newest message time
    decisions: Counter[Decision] = field(default_factory=Counter)
    resends: int = 0  # decided from their digest, not decoded


class Pipeline:
    def __init__(self, app: faust.App, settings: Settings, states: FingerprintStates, sink: Sink) -> None:
        self.app = app
        self.settings = settings
        self.states = states
        self.sink = sink
        self.flap = state.FlapRule(window_ms=settings.flap_window * 1000, threshold=settings.flap_threshold)
        self.window_ms = settings.dedup_window * 1000
        # A state is consulted for dedup within window_ms of its last sighting, for flapping within
        # the flap window: after the longer of the two it can go.
        self.horizon_ms = max(self.window_ms, self.flap.window_ms)
        self.clock: dict[int, int] = {}  # partition → newest message time committed: its stream time
        self._stored: dict[int, int] | None = None  # sink's next offsets, reloaded after each rebalance
        self._topic_code: int | None = None
        self.holes = HoleFiller(settings.kafka_brokers or "", settings.topic)
        self._phase = {name: metrics.BATCH_PHASE_SECONDS.labels(name) for name in PHASES}
        self._batch_end: float | None = None
        self._decided: dict[int, int] = {}  # next offsets including the batch being written
        self._pending: dict[str, FingerprintState | None] = {}  # its overlay, until the table has it
        self._writing: asyncio.Task[None] | None = None
        # Messages whose rows PostgreSQL refused, dead-lettered: decided as if absent, replays included (kept in
        # PostgreSQL, so a restarted worker skips them too). (partition, offset) → reason
        self._poisoned: dict[tuple[int, int], str] = {}

    def forget_offsets(self) -> None:
        self._stored = None

    async def process(self, events: Sequence[faust.types.EventT]) -> None:
        """Decide a batch, then hand it to the writer; returns while it is being stored.

        The writer stores one batch at a time and acks its messages once stored, so deciding the
        next batch (and Faust delivering it) overlaps PostgreSQL and Kafka working on this one.
        Decisions look at the batch being written through its overlay, before RocksDB.
        """
        started = t = time.perf_counter()
        if self._batch_end is not None:
            self._phase["wait"].inc(started - self._batch_end)
        records: list[ConsumerRecord] = []
        for ev in events:
            ev.message.incref()  # held past take_events' ack, until the writer has stored the batch
            chunk: RecordChunk = ev.value
            records.extend(chunk.records)
        if self._topic_code is None:
            self._topic_code = await self.sink.topic_code(self.settings.topic)
        while True:
            if self._stored is None:  # first batch, a rebalance, or the batch before was stale
                await self.drain()
                self._stored = await self.sink.committed_offsets(self.settings.topic)
                self._decided = dict(self._stored)
                self._poisoned = await self.sink.refused_messages(self.settings.topic)
            filled = await self.holes.fill(records, self._decided)
            t = self._timed("holes", t)
            batch = await self.decide(filled, self._decided, self._partition_count())
            t = self._timed("decide", t)
            await produce_all(self.app, batch.out)
            t = self._timed("produce", t)
            await self.drain()
            t = self._timed("previous", t)
            if self._stored is not None:
                break
            # The batch before ours was not stored (another worker had them) or a rebalance came: our
            # decisions built on its overlay. Decide again from what PostgreSQL and the table hold.
        for partition, offset in batch.next_offsets.items():  # a replay after a restart starts below them
            self._decided[partition] = max(offset, self._decided.get(partition, 0))
        self._pending = batch.overlay
        self._writing = asyncio.create_task(self._store(batch, events, filled, started))
        self._batch_end = t

    async def drain(self) -> None:
        """Wait until the batch handed to the writer is stored (or dropped as stale)."""
        if self._writing is not None:
            await asyncio.shield(self._writing)
            self._writing = None

    async def _store(
        self, batch: Batch, events: Sequence[faust.types.EventT], records: Sequence[ConsumerRecord], started: float
    ) -> None:
        t = time.perf_counter()
        redecided = False
        try:
            batch, redecided = await self._write_rows(batch, records)
            t = self._timed("sink", t)
            # Acked below. Its table state must be in the changelog by then: a worker taking these
            # partitions over restores from the changelog and starts after the acked offset.
            await self.states.write(
                {(fp, batch.partition[fp]): st for fp, st in batch.overlay.items() if st is not None}
            )
            self._timed("state", t)
        except StaleBatch as exc:
            log.warning("batch dropped: %s (another worker owns these partitions now)", exc)
            self._stored = None
            _ack(events)
            return
        except BaseException as exc:
            _batch_failed(self.app, events, exc)
            return
        finally:
            self._pending = {}  # in the table now, or not to be built on
        _ack(events)
        if redecided:
            self._stored = None  # the batch decided meanwhile built on the refused rows: decide it again
        elif self._stored is not None:
            for partition, offset in batch.next_offsets.items():
                self._stored[partition] = max(offset, self._stored.get(partition, 0))
        for partition, ts in batch.newest.items():
            self.clock[partition] = max(ts, self.clock.get(partition, 0))
        for decision, n in batch.decisions.items():
            metrics.EVENTS.labels(decision.value).inc(n)
        metrics.RESENDS.inc(batch.resends)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch of %d stored: next offsets %s, decisions %s, %d new rows",
                len(records), dict(batch.next_offsets), dict(batch.decisions),
                sum(o.decision in NEW_ROW for o in batch.outcomes),
            )  # fmt: skip
        metrics.BATCH_SIZE.observe(len(records))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _write_rows(self, batch: Batch, records: Sequence[ConsumerRecord]) -> tuple[Batch, bool]:
        """Store the batch. If PostgreSQL refuses some of its rows for their data (nothing else can pass them
        later either), their messages go to the dead-letter topic and the batch is decided again without
        them, from PostgreSQL's offsets and the table, then stored. Returns the batch stored and whether it
        was decided again."""
        topic = self.settings.topic
        try:
            await self.sink.write(topic, batch.outcomes, batch.next_offsets)
            return batch, False
        except RowsRejected as exc:
            refused = exc
        by_position = {(r.partition, r.offset): r for r in records}
        for _ in range(3):  # each round finds every row refused alone; a second round is already unusual
            found = await self.sink.rejected(topic, batch.outcomes, batch.next_offsets)
            if not found:
                raise refused  # no row is at fault alone: not something dead-lettering can fix
            refused_now = {(o.position.partition, o.position.offset): reason for o, reason in found}
            # Recorded before anything else: a crash from here on replays the batch without them.
            await self.sink.refuse(topic, refused_now)
            self._poisoned.update(refused_now)
            letters = [self._dead_letter(by_position[w], f"PostgreSQL refused it: {r}") for w, r in refused_now.items()]
            await produce_all(self.app, letters)
            self._pending = {}  # decided again from the table, as if the refused rows had never come
            applied = await self.sink.committed_offsets(topic)
            batch = await self.decide(records, applied, self._partition_count())
            try:
                await self.sink.write(topic, batch.outcomes, batch.next_offsets)
                return batch, True
            except RowsRejected as exc:
                refused = exc
        raise refused

    def _timed(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self._phase[phase].inc(now - since)
        return now

    async def decide(self, records: Sequence[ConsumerRecord], applied: Mapping[int, int], partitions: int) -> Batch:
        """`applied`: per partition, the next offset whose effect is not stored or being stored yet."""
        batch = Batch()
        for i, msg in enumerate(records):
            if i % DECIDE_SLICE == DECIDE_SLICE - 1:
                # Let the writer's PostgreSQL and Kafka replies in: a whole batch is tens of ms of CPU.
                # Its overlay stays consulted until its states are in RocksDB, so what we read is the same.
                await asyncio.sleep(0)
            position = Position(msg.topic, msg.partition, msg.offset, msg.timestamp)
            replay = msg.offset < applied.get(msg.partition, 0)
            batch.next_offsets[msg.partition] = msg.offset + 1
            batch.newest[msg.partition] = position.timestamp_ms  # LogAppendTime: the clock update takes the max
            if (msg.partition, msg.offset) in self._poisoned:
                continue  # its row was refused by PostgreSQL: in the dead-letter topic, never applied
            try:
                self._decide_one(batch, msg, position, replay, partitions)
            except Exception as exc:
                # Input nothing foresaw, or a bug: that message is dead-lettered, never the pipeline stopped.
                log.exception("deciding message %s/%s failed", msg.partition, msg.offset)
                if not replay:
                    batch.out.append(self._dead_letter(msg, f"internal error: {exc!r}"[:MAX_REASON]))
        return batch

    def _decide_one(
        self, batch: Batch, msg: ConsumerRecord, position: Position, replay: bool, partitions: int
    ) -> None:
        """One message into the batch. Raises before changing the batch, or changes it completely."""
        if msg.key and not msg.headers and self._resend(batch, msg, position, replay, partitions):
            return
        try:
            event = ingest.decode(msg.value, position, msg.headers)
        except ingest.Rejected as exc:
            if not replay:
                batch.out.append(self._dead_letter(msg, exc.reason))
            return
        if ingest.misplaced(event, partitions):
            if not replay:
                batch.out.append(self._rekeyed(msg, event))
            return
        self._apply(batch, event, replay)

    def _state(self, batch: Batch, fingerprint: str, partition: int) -> FingerprintState | None:
        """The fingerprint's state as this batch has it: its overlay, the batch being written, then RocksDB."""
        if fingerprint in batch.overlay:
            return batch.overlay[fingerprint]
        if fingerprint not in batch.looked_up:
            pending = self._pending
            found = pending[fingerprint] if fingerprint in pending else self.states.get(fingerprint, partition)
            batch.looked_up[fingerprint] = found
            batch.partition[fingerprint] = partition
        return batch.looked_up[fingerprint]

    def _resend(self, batch: Batch, msg: ConsumerRecord, position: Position, replay: bool, partitions: int) -> bool:
        """Decide a message byte-identical to the one its fingerprint's state last applied, without decoding it
        (most of the stream: Alertmanager's repeat_interval resends and HA copies). False: decode it."""
        if ingest.key_partition(msg.key, partitions) != msg.partition:
            return False
        try:
            fp = msg.key.decode("ascii")
        except UnicodeDecodeError:
            return False
        prev = self._state(batch, fp, msg.partition)
        if prev is None or prev.value_hash is None or prev.value_hash != ingest.value_hash(msg.value or b""):
            return False
        decision = dedup.decide_resend(prev, position, window_ms=self.window_ms)
        if decision is Decision.FIRST_SEEN:
            return False  # silent for a whole window: a new row, which needs the decoded event
        new = prev if decision is Decision.REPLAYED else state.resent(prev, position)
        batch.overlay[fp] = new
        batch.decisions[decision] += 1
        batch.resends += 1
        if not replay and decision is Decision.DUPLICATE:
            batch.outcomes.append(Outcome(fp, position, decision, new))
        return True

    def _apply(self, batch: Batch, event: AlertEvent, replay: bool) -> None:
        fp = event.fingerprint
        prev = self._state(batch, fp, event.position.partition)
        decision = dedup.decide(prev, event, window_ms=self.window_ms)
        new = state.advance(prev, event, decision, self.flap, self._topic_code or 0)
        stored = not replay and decision is not Decision.REPLAYED
        outcome = None
        if stored:
            outcome = Outcome(
                fingerprint=fp,
                position=event.position,
                decision=decision,
                state=new,
                event=event,
                # Without a state to compare with (first sighting, or state expired) the sink asks the alerts row.
                opens_episode=None if prev is None else decision in NEW_ROW and event.starts_at_ms != prev.starts_at_ms,
                severity=enrich.severity(event),
                # Only a new row stores it; resends (most of the stream) skip the rules.
                classification=enrich.classify(event) if decision in NEW_ROW else "",
            )
        # Only now, with nothing left to fail, does the batch change.
        batch.overlay[fp] = new
        batch.decisions[decision] += 1
        if outcome is not None:
            batch.outcomes.append(outcome)

    def _dead_letter(self, msg: ConsumerRecord, reason: str) -> OutMessage:
        metrics.DEAD_LETTERS.inc()
        log.warning(
            "message %s/%s to dead-letter topic: %s",
            msg.partition,
            msg.offset,
            reason,
            extra={"partition": msg.partition, "offset": msg.offset, "reason": reason},
        )
        headers = (
            (ingest.DLQ_REASON_HEADER, reason.encode()),
            ("alert-history-source", f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
        )
        return OutMessage(self.settings.dlq_topic, msg.key, msg.value or b"", None, headers)

    def _rekeyed(self, msg: ConsumerRecord, event: AlertEvent) -> OutMessage:
        metrics.REKEYED.inc()
        origin = f"{msg.partition}/{msg.offset}"
        headers = ((ingest.ORIGIN_HEADER, origin.encode()),)
        return OutMessage(self.settings.topic, event.fingerprint.encode(), msg.value, None, headers)

    def _partition_count(self) -> int:
        count = self.app.consumer.topic_partitions(self.settings.topic)
        return count or self.settings.partitions

    async def expire(self, wall_ms: int) -> tuple[int, int]:
        """Drop states no later event can consult; returns how many went and how many are left.

        Time is each partition's stream time, never the wall clock alone: a worker replaying last
        week must keep the states last week's events still look at. A partition read to its end is
        at the broker's present, which the wall clock stands for (less CLOCK_SKEW_MS).
        """
        # Only partitions we own: a delete writes a tombstone to the partition's changelog.
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.settings.topic}
        stored = self._stored
        if stored is None:  # nothing processed since (re)assignment; read only: process() owns _stored
            stored = await self.sink.committed_offsets(self.settings.topic) if assigned else {}
        now = {p: self._stream_time(p, wall_ms, stored) for p in assigned}
        held = 0
        stale: list[tuple[str, int]] = []
        for fp, p, st in self.states.items(assigned):
            held += 1
            if state.expired(st, now[p], self.horizon_ms):
                stale.append((fp, p))
        expired = 0
        # Each delete is a changelog tombstone: chunks keep a mass expiry (a million fingerprints after an
        # incident) from holding them all in the producer at once.
        for i in range(0, len(stale), EXPIRE_CHUNK):
            chunk = stale[i : i + EXPIRE_CHUNK]
            if i:  # batches ran meanwhile and may have refreshed a state: look again
                chunk = [(fp, p) for fp, p in chunk if self._still_expired(fp, p, now[p])]
            await self.states.write(dict.fromkeys(chunk))
            expired += len(chunk)
        metrics.EXPIRED.inc(expired)
        return expired, held - expired

    def _still_expired(self, fingerprint: str, partition: int, now_ms: int) -> bool:
        st = self.states.get(fingerprint, partition)
        return st is not None and state.expired(st, now_ms, self.horizon_ms)

    def _stream_time(self, partition: int, wall_ms: int, stored: Mapping[int, int]) -> int:
        committed = self.clock.get(partition, 0)  # 0: nothing processed here since this worker started
        highwater = self.app.consumer.highwater(faust.types.TP(self.settings.topic, partition))  # None: not fetched yet
        caught_up = highwater is not None and stored.get(partition, 0) >= highwater
        # The margin never exceeds the horizon, so short test windows still expire promptly.
        return max(committed, wall_ms - min(CLOCK_SKEW_MS, self.horizon_ms)) if caught_up else committed


def _ack(events: Sequence[faust.types.EventT]) -> None:
    for event in events:
        event.ack()


def _leave_unacked(events: Sequence[faust.types.EventT]) -> None:
    # Stopping mid-batch: mark the messages done without acking them, so their offsets are not
    # committed and the next owner replays them.
    for event in events:
        event.message.acked = True


def _batch_failed(app: faust.App, events: Sequence[faust.types.EventT], exc: BaseException) -> None:
    _leave_unacked(events)
    if isinstance(exc, asyncio.CancelledError) or app.should_stop:
        # e.g. the producer already stopped under us: not a failure of the batch
        log.warning("worker stopping mid-batch: the batch stays unacked and will be replayed")
        return
    # Carrying on would ack a batch PostgreSQL does not hold, or a table behind it. Exit instead:
    # the restarted worker replays from the committed offset and loses nothing.
    log.critical("pipeline batch failed; exiting so a restart replays it", exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


def wire(app: faust.App, settings: Settings, sink: Sink) -> Pipeline:
    """Register the table, the agent and the expiry timer on `app`."""
    pipeline = Pipeline(app, settings, fingerprint_state.define(app, settings), sink)
    # Delivered a fetched chunk of records per event (app/consumer.py): the pipeline works in batches.
    app.chunked_topics = app.chunked_topics | {settings.topic}  # type: ignore[attr-defined]
    topic = app.topic(settings.topic, schema=ChunkSchema(), partitions=settings.partitions)

    @app.agent(topic, name="alert-history-pipeline")
    async def run(stream: faust.Stream) -> None:
        # Messages are acked by the writer once stored, never by take_events (process holds a reference).
        async for events in stream.take_events(BATCH_CHUNKS, within=BATCH_WITHIN_S):
            try:
                await pipeline.process(events)
            except asyncio.CancelledError:
                _leave_unacked(events)
                raise
            except Exception as exc:
                _batch_failed(app, events, exc)  # exits, unless the worker is stopping anyway
                return

    # Every minute, or a quarter of short windows, so a state outlives its horizon by at most that.
    @app.timer(interval=max(1.0, min(60.0, pipeline.horizon_ms / 4000)), on_leader=False)
    async def expire_states() -> None:
        _, live = await pipeline.expire(int(time.time() * 1000))
        metrics.LIVE_FINGERPRINTS.set(live)

    app.on_partitions_revoked.connect(lambda *a, **kw: pipeline.forget_offsets())  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(lambda *a, **kw: pipeline.forget_offsets())  # type: ignore[arg-type]
    return pipeline
