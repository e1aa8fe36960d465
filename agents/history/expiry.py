"""The history agent's expiry: drop the fingerprint states no later event can consult.

Time is each partition's stream time, never the wall clock alone: a worker replaying last week must keep the
states last week's events still look at. A partition read to its end is at the broker's present, which the
wall clock stands for (less CLOCK_SKEW_MS).
"""

from __future__ import annotations

from collections.abc import Mapping

import faust

from agents import state
from agents.history.writer import Writer
from app import metrics
from tables.fingerprint_state import FingerprintStates

# How far the broker's clock (LogAppendTime) may lag this worker's: expiry by the wall clock keeps this margin.
CLOCK_SKEW_MS = 60_000
# Each delete is a changelog tombstone: chunks keep a mass expiry (a million fingerprints after an incident)
# from holding them all in the producer at once.
EXPIRE_CHUNK = 10_000


class Expiry:
    def __init__(self, app: faust.App, topic: str, states: FingerprintStates, writer: Writer, horizon_ms: int) -> None:
        self.app = app
        self.topic = topic
        self.states = states
        self.writer = writer
        self.horizon_ms = horizon_ms

    @property
    def interval_s(self) -> float:
        """Every minute, or a quarter of short windows, so a state outlives its horizon by at most that."""
        return max(1.0, min(60.0, self.horizon_ms / 4000))

    async def run(self, wall_ms: int) -> tuple[int, int]:
        """Returns how many states went and how many are left."""
        # Only partitions we own: a delete writes a tombstone to the partition's changelog.
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topic}
        stored = self.writer.stored
        if stored is None:  # nothing stored since (re)assignment; read only: the writer owns its offsets
            stored = await self.writer.sink.committed_offsets(self.topic) if assigned else {}
        now = {p: self._stream_time(p, wall_ms, stored) for p in assigned}
        held = 0
        stale: list[tuple[str, int]] = []
        for fp, p, st in self.states.items(assigned):
            held += 1
            if state.expired(st, now[p], self.horizon_ms):
                stale.append((fp, p))
        expired = 0
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
        committed = self.writer.clock.get(partition, 0)  # 0: nothing processed here since this worker started
        highwater = self.app.consumer.highwater(faust.types.TP(self.topic, partition))  # None: not fetched yet
        caught_up = highwater is not None and stored.get(partition, 0) >= highwater
        # The margin never exceeds the horizon, so short test windows still expire promptly.
        return max(committed, wall_ms - min(CLOCK_SKEW_MS, self.horizon_ms)) if caught_up else committed
