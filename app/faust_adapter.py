"""Every use of Faust's private API, in one place, with a check at start that names each attribute relied on.

A Faust upgrade that renames one fails the worker at start (and `tests/app/test_faust_adapter.py`), loudly,
instead of silently in production. What is here:
- `Consumer`: Faust's aiokafka consumer, delivering the chunked topics one fetched chunk at a time;
- `raw_producer`: the aiokafka producer under Faust's, for record batches and metadata;
- `rocksdb`, `rocksdbs`: a RocksDB table's per-partition databases;
- `check`: the start-up check.

The chunked consumer:

Faust turns every fetched record into a message and an event and passes each through the conductor,
the channel's queue, the stream and the ack bookkeeping: more of a worker's CPU per record than deciding it
(docs/performance.md), for a pipeline that decides and stores whole batches anyway. For the topics named in
`app.chunked_topics` this consumer delivers each partition's records of one fetch (at most
`CHUNK_RECORDS`) as one message whose value is a `RecordChunk` of aiokafka's records; acking that
message acks every offset in it. Everything else stays Faust's: the agent consumes the stream, flow
control and rebalances suspend delivery, offsets are committed from what was acked. Other topics are
delivered a record at a time as in Faust.

The delivery itself runs in place: Faust's fetch loop wraps each delivery, the suspend flag and the
consumer's stopped and crashed flags in four asyncio tasks (`wait_first`), though delivery almost never
waits. Only a delivery that does wait (a full buffer) goes through `wait_first`, so a rebalance's
`suspend_flow` still interrupts it. A Faust outside the tested range keeps Faust's own loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Coroutine, Generator, Mapping, Sequence
from typing import Any

import faust
import rocksdict
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.types import TP, ConsumerMessage, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

log = logging.getLogger(__name__)

TESTED_FAUST = ("0.15.",)
CHUNK_RECORDS = 500  # a partition's fetch is split into chunks of at most this many records

# Each private attribute this module relies on, by the Faust class that must have it (on its instances).
PRIVATE: dict[str, tuple[str, ...]] = {
    "faust.transport.drivers.aiokafka.Consumer": (
        "_committed_offset", "_acked_index", "_unacked_messages", "_acked", "_n_acked", "_waiting_for_ack",
        "_wait_next_records", "_to_message", "_buffered_partitions", "_drain_messages", "_stopped", "_read_offset",
        "_commit_every", "_add_gap",
    ),
    "faust.transport.drivers.aiokafka.Producer": ("_ensure_producer",),
    "faust.stores.rocksdb.Store": ("_db_for_partition", "_dbs"),
}  # fmt: skip


class FaustIncompatible(RuntimeError):
    """This Faust lacks private attributes alert-history relies on: pin the tested version (pyproject.toml)."""


def missing(owner: str, obj: object) -> list[str]:
    """`owner`'s private attributes (PRIVATE) that `obj` lacks, each as `owner.attribute`."""
    return [f"{owner}.{name}" for name in PRIVATE[owner] if not hasattr(obj, name)]


def check(app: faust.App, tables: Sequence[faust.types.TableT] = ()) -> None:
    """Raise FaustIncompatible naming every private attribute the running app's objects lack."""
    gone = missing("faust.transport.drivers.aiokafka.Producer", app.producer)
    if not getattr(app, "producer_only", False):
        gone += missing("faust.transport.drivers.aiokafka.Consumer", app.consumer)
    for table in tables:
        gone += missing("faust.stores.rocksdb.Store", table.data)
    if gone:
        raise FaustIncompatible(
            f"Faust {faust.__version__} lacks {', '.join(gone)}: alert-history is tested with Faust "
            f"{' or '.join(v + 'x' for v in TESTED_FAUST)}; install that version"
        )


def raw_producer(app: faust.App) -> AIOKafkaProducer:
    """The aiokafka producer under Faust's (started with it): record batches, metadata, sends without Faust's
    per-message machinery."""
    return app.producer._ensure_producer()  # type: ignore[attr-defined]  # private: see PRIVATE


def rocksdb(table: faust.types.TableT, partition: int) -> rocksdict.Rdict:
    """The RocksDB database of one partition of a RocksDB-backed table (opened if need be)."""
    return table.data._db_for_partition(partition)  # type: ignore[attr-defined]  # private: see PRIVATE


def rocksdbs(table: faust.types.TableT) -> Mapping[int, rocksdict.Rdict]:
    """The RocksDB databases of a table's partitions open in this worker."""
    return table.data._dbs  # type: ignore[attr-defined]  # private: see PRIVATE


async def send_record_batches(
    producer: AIOKafkaProducer, topic: str, by_partition: Mapping[int, Sequence[tuple[bytes | None, bytes | None]]]
) -> dict[int, int]:
    """Each partition's (key, value) records as few Kafka record batches as fit, not one send per record; waits
    until Kafka acknowledged all. Returns the offset of the last record written to each partition."""
    sent: list[tuple[int, asyncio.Future[Any], int]] = []
    for partition, records in by_partition.items():
        builder = producer.create_batch()
        count = 0
        for key, value in records:
            while builder.append(key=key, value=value, timestamp=None) is None:  # full: send, start another
                if count == 0:
                    raise ValueError(f"a record of {topic} (key {key!r}) exceeds the producer's max batch size")
                sent.append((partition, await producer.send_batch(builder, topic, partition=partition), count))
                builder, count = producer.create_batch(), 0
            count += 1
        if count:
            sent.append((partition, await producer.send_batch(builder, topic, partition=partition), count))
    last: dict[int, int] = {}
    for partition, future, count in sent:
        meta = await future
        last[partition] = max(last.get(partition, -1), meta.offset + count - 1)
    return last


class RecordChunk:
    """Records of one partition, in offset order, from one fetch: the value of a chunk message."""

    __slots__ = ("records",)

    def __init__(self, records: Sequence[ConsumerRecord]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)


class ChunkSchema(faust.Schema):
    """Key and value of a chunk message as they are: the value is the RecordChunk itself."""

    def loads_key(self, app: Any, message: Message, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Message, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.value


class Started:
    """Awaitable that continues a coroutine already stepped once (it yielded `pending`): `yield from` for a
    coroutine that has begun, so the task that awaits this one sees the same futures."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # cancelled while waiting: the coroutine gets to clean up
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def gaps(records: Sequence[ConsumerRecord | Message], after: int | None) -> list[tuple[int, int]]:
    """Offsets the broker will never deliver (compacted away, transaction markers) before and between
    these records (a chunk's, or one message), as inclusive ranges; `after` is the offset delivered before."""
    out: list[tuple[int, int]] = []
    if after and records[0].offset - after > 1:
        out.append((after + 1, records[0].offset - 1))
    if records[-1].offset - records[0].offset + 1 != len(records):  # rare: only then look at each
        for prev, rec in itertools.pairwise(records):
            if rec.offset - prev.offset > 1:
                out.append((prev.offset + 1, rec.offset - 1))
    return out


class Consumer(aiokafka.Consumer):
    def chunked(self, topic: str) -> bool:
        return topic in getattr(self.app, "chunked_topics", ())

    def ack(self, message: Message) -> bool:
        """Faust's ack; for a chunk, every offset in it (as Faust would ack each record's message)."""
        chunk = message.value
        if type(chunk) is not RecordChunk:
            return super().ack(message)
        with ack_lock:
            if message.acked:
                return False
            message.acked = True
            tp = message.tp
            try:
                committed = self._committed_offset[tp]
                acked_index = self._acked_index[tp]
                offsets = [
                    r.offset
                    for r in chunk.records
                    if (committed is None or r.offset >= committed) and r.offset not in acked_index
                ]
                self._unacked_messages.discard(message)
                acked_index.update(offsets)
                self._acked[tp].extend(offsets)
                self._n_acked += len(offsets)
                return bool(offsets)
            finally:
                notify(self._waiting_for_ack)

    def _to_chunk(self, tp: TP, records: Sequence[ConsumerRecord]) -> Message:
        last = records[-1]
        return ConsumerMessage(
            last.topic, last.partition, last.offset, last.timestamp / 1000.0, last.timestamp_type,
            None, None, RecordChunk(records), None, 0, 0, tp, generation_id=self.app.consumer_generation_id,  # type: ignore[arg-type]  # a chunk is this message's value, not bytes
        )  # fmt: skip

    async def fetched(self, wait_s: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's getmany, with chunk messages for the chunked topics."""
        records, active = await self._wait_next_records(wait_s)
        generation = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:
                await self.perform_seek()  # as Faust does: back to the committed offsets
            except Exception as exc:
                log.warning("seek while flow not active failed: %r", exc)
            return
        to_message = self._to_message
        for tp, tp_records in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break  # a rebalance began: what is left is fetched again after it
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if self.chunked(tp.topic):
                for i in range(0, len(tp_records), CHUNK_RECORDS):
                    yield tp, self._to_chunk(tp, tp_records[i : i + CHUNK_RECORDS])
            else:
                for record in tp_records:
                    yield tp, to_message(tp, record)

    async def deliver(self, delivery: Coroutine[Any, Any, Any]) -> None:
        try:
            pending = delivery.send(None)
        except StopIteration:
            return  # the usual case: queued on the stream without waiting
        await self.wait_first(Started(delivery, pending), self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the worker's fetch loop
        if not faust.__version__.startswith(TESTED_FAUST):
            log.warning("Faust %s is outside the tested range: using its own fetch loop", faust.__version__)
            return await super()._drain_messages(fetcher)
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.fetched(wait_s=1.0)
                await asyncio.sleep(0)  # a fetch can return at once in a loop: let others run
                if self.should_stop:
                    break
                async for tp, message in fetched:
                    read = get_read_offset(tp)
                    chunk: Any = message.value
                    records: Sequence[Any] = chunk.records if type(chunk) is RecordChunk else (message,)
                    if read is not None and records[0].offset < read:  # a seek back: drop what was delivered
                        records = [r for r in records if r.offset >= read]
                        if not records:
                            continue
                        chunk.records = records  # only a chunk gets here: a single message was dropped
                    if acks_enabled_for(message.topic):
                        for start, end in gaps(records, read):
                            await self._add_gap(tp, start, end)
                    since_yield += len(records)
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await self.deliver(callback(message))  # type: ignore[arg-type]  # Faust's callback is a coroutine function
                    set_read_offset(tp, message.offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)
