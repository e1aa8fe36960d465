"""`fingerprint-state`: what dedup and the state machine remember per fingerprint (RocksDB + changelog).

Keyed by the raw fingerprint bytes and partitioned like the topic: the changelog partition of a
key equals the topic partition its events are read from (the pipeline guarantees that by
re-keying misplaced messages), so a worker taking a partition over restores exactly that
partition's changelog. Entries expire once no window looks back at them any more.

Faust defines the table: its changelog topic, recovery on assignment and the RocksDB file per
partition. Reads and writes go to that per-partition RocksDB directly, and a batch's changelog
goes out as one Kafka record batch per partition: Faust's per-key path (a `FutureMessage`, a
producer-buffer entry and a send per key, a JSON record codec) cost more than everything else the
pipeline does per event. The stored bytes are a JSON array of the state's fields.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import cast

import faust
import orjson
import rocksdict
from faust.stores.rocksdb import Store

from app.faust_adapter import raw_producer, rocksdb, rocksdbs, send_record_batches
from app.records import FingerprintState
from app.settings import Settings

TABLE_NAME = "fingerprint-state"
_FIELDS = frozenset(f.name for f in dataclasses.fields(FingerprintState))


def encode(state: FingerprintState) -> bytes:
    """The fields as a JSON array in declaration order: quicker to encode and decode, and smaller, than an object.
    Fields are only ever added at the end, with a default, so older values still decode."""
    s = state
    return orjson.dumps([
        s.event_id, s.status, s.starts_at_ms, s.received_ms, s.last_seen_ms, s.duplicates, s.transitions_ms,
        s.flapping, s.offset, s.origins, s.value_hash,
    ])  # fmt: skip


def decode(raw: bytes) -> FingerprintState:
    data = orjson.loads(raw)
    if type(data) is list:
        return FingerprintState(*data)
    # An object: written by an earlier version (fields by name; Faust's record codec added "__faust" metadata).
    if data.keys() - _FIELDS:
        data = {k: v for k, v in data.items() if k in _FIELDS}
    return FingerprintState(**data)


def define(app: faust.App, settings: Settings) -> FingerprintStates:
    table = app.Table(
        TABLE_NAME,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        use_partitioner=True,
        help="dedup/state per fingerprint; expires once neither the dedup nor the flap window looks back at it",
    )
    return FingerprintStates(app, table)


class FingerprintStates:
    """The table as the pipeline uses it: look-ups by (fingerprint, partition), writes a batch at a time."""

    def __init__(self, app: faust.App, table: faust.types.TableT) -> None:
        self.app = app
        self.table = table

    @property
    def _store(self) -> Store:
        return cast(Store, self.table.data)  # define() makes it a RocksDB table

    def get(self, fingerprint: str, partition: int) -> FingerprintState | None:
        raw = rocksdb(self.table, partition).get(fingerprint.encode())
        return None if raw is None else decode(raw)

    async def write(self, changes: Mapping[tuple[str, int], FingerprintState | None]) -> None:
        """Store the states (None: delete) and wait until Kafka acknowledged their changelog records.

        RocksDB first, one write batch per partition, then the changelog; a crash between the two is
        what recovery is for (the changelog is re-read from the last persisted offset).
        """
        if not changes:
            return
        topic = self.table.changelog_topic.get_topic_name()
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        for (fingerprint, partition), state in changes.items():
            by_partition[partition].append((fingerprint.encode(), None if state is None else encode(state)))
        store = self._store
        for partition, records in by_partition.items():
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in records:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            rocksdb(self.table, partition).write(batch)
        persisted = await send_record_batches(raw_producer(self.app), topic, by_partition)
        # Where recovery resumes reading the changelog into this partition's RocksDB.
        for partition, offset in persisted.items():
            store.set_persisted_offset(faust.types.TP(topic, partition), offset)

    def items(self, partitions: set[int]) -> Iterator[tuple[str, int, FingerprintState]]:
        """Every live state of these partitions: (fingerprint, partition, state)."""
        store = self._store
        open_dbs = rocksdbs(self.table)
        for partition in sorted(partitions):
            db = open_dbs.get(partition)
            if db is None:
                continue
            for key, raw in db.items():
                if key != store.offset_key:
                    assert isinstance(key, bytes) and isinstance(raw, bytes)  # the table is in raw mode
                    yield key.decode(), partition, decode(raw)
