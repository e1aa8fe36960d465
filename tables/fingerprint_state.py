"""`fingerprint-state`: what dedup and the state machine remember per fingerprint (RocksDB + changelog).

Keyed by the raw fingerprint bytes (key_type=bytes: Faust would JSON-encode a str key, with quotes)
and written with the producer's partitioner, so the changelog partition of a key equals the topic
partition its events are read from (the pipeline guarantees that by re-keying misplaced messages).
A worker taking a partition over restores exactly that partition's changelog; with JSON keys the
entries landed on other changelog partitions and a takeover restored stale state.
Entries expire a dedup window after their last sighting.
"""

from __future__ import annotations

import faust

from app.records import FingerprintState
from app.settings import Settings

TABLE_NAME = "fingerprint-state"


def define(app: faust.App, settings: Settings) -> faust.Table:
    return app.Table(
        TABLE_NAME,
        key_type=bytes,
        value_type=FingerprintState,
        partitions=settings.partitions,
        use_partitioner=True,  # written after the PostgreSQL commit, outside any one event's context
        help="dedup/state per fingerprint; expires dedup_window seconds after the last sighting",
    )
