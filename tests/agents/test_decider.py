"""Property, in-process: the decider, run as the history agent runs it, leaves the reference model's rows.

A generated stream (tests/agents/generated.py) goes onto an in-memory topic as a producer would put it, and a
worker of that topic runs in the test: random batches, each decided against the batch still being written and
the table (as the agent does), written to an in-memory sink with PostgreSQL's semantics, the table updated and
the batch acked; crashes at random moments (before the batch is stored, after it is stored but before the table
has it, after both but before the ack), Kafka's committed offsets lagging the acks, expiry now and then. The
rows must equal tests/model.py's, row for row, timestamps included, and the events topic must carry every stored
row's event (a crash may repeat one, never lose one). No broker, no database: thousands of
streams in seconds (the model test with a real worker stays the integration check).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import state
from agents.history.decider import Batch, Decider, Rules
from app.partition import key_partition
from app.records import NEW_ROW, FingerprintState
from tests.agents.generated import message, streams
from tests.model import Message, alert_tuples, event_tuples, expected
from tests.model import Rules as ModelRules
from tests.sinks.memory import MemorySink

EXAMPLES = int(os.environ.get("ALERT_HISTORY_DECIDER_EXAMPLES", "2000"))
TOPIC = "alerts"
PARTITIONS = 3
NOW = datetime(2026, 1, 1, tzinfo=UTC)
RULES = Rules(window_ms=1000, flap=state.FlapRule(window_ms=3000, threshold=3))
MODEL_RULES = ModelRules(dedup_window_s=1, flap_window_s=3, flap_threshold=3)
PAUSE_MS = 1300  # longer than the dedup window


@dataclass
class Topic:
    """The partitions of a Kafka topic with LogAppendTime: each message stamped with the broker's clock."""

    rng: random.Random
    log: dict[int, list[ConsumerRecord]] = field(default_factory=lambda: {p: [] for p in range(PARTITIONS)})
    clock_ms: int = int(NOW.timestamp() * 1000)

    def append(self, key: bytes | None, value: bytes, headers: tuple[tuple[str, bytes], ...] = ()) -> None:
        # Kafka's default partitioner: murmur2 of the key; an unkeyed message lands on any partition.
        p = key_partition(key, PARTITIONS) if key is not None else self.rng.randrange(PARTITIONS)
        self.log[p].append(
            ConsumerRecord(TOPIC, p, len(self.log[p]), self.clock_ms, 1, key, value, None, 0, 0, list(headers))
        )

    def messages(self) -> list[Message]:
        return [
            Message(r.partition, r.offset, r.timestamp, r.value, dict(r.headers)) for p in self.log.values() for r in p
        ]


@dataclass
class Worker:
    """The history agent's protocol around the decider, as agents/history/agent.py and writer.py run it."""

    topic: Topic
    sink: MemorySink
    rng: random.Random
    table: dict[str, FingerprintState] = field(default_factory=dict)  # RocksDB + changelog: survives crashes
    committed: dict[int, int] = field(default_factory=dict)  # the consumer group's offsets in Kafka
    position: dict[int, int] = field(default_factory=dict)
    pending: Batch | None = None  # decided, handed to the writer, not stored yet
    decided: dict[int, int] = field(default_factory=dict)
    refused: dict[tuple[int, int], str] = field(default_factory=dict)
    clock: dict[int, int] = field(default_factory=dict)  # partition → newest message time stored
    published: list[int] = field(default_factory=list)  # event ids put on the events topic, repeats included
    crashes: int = 0

    def __post_init__(self) -> None:
        self.decider = Decider(RULES, topic=TOPIC, dlq_topic=f"{TOPIC}-dlq", topic_code=1, lookup=self.lookup)
        self.restart()

    def lookup(self, fingerprint: str, partition: int) -> FingerprintState | None:
        pending = self.pending.overlay if self.pending is not None else {}
        return pending[fingerprint] if fingerprint in pending else self.table.get(fingerprint)

    def restart(self) -> None:
        self.pending = None
        self.position = dict(self.committed)  # the consumer resumes from Kafka's committed offsets
        self.decided = run(self.sink.committed_offsets(TOPIC))
        self.refused = run(self.sink.refused_messages(TOPIC))

    def cycle(self, crash: str | None = None) -> None:
        """Fetch a batch, decide it against the batch being written, then let the writer store that one."""
        records: list[ConsumerRecord] = []
        for p in self.rng.sample(range(PARTITIONS), PARTITIONS):
            start = self.position.get(p, 0)
            chunk = self.topic.log[p][start : start + self.rng.randint(0, 6)]
            records.extend(chunk)
            self.position[p] = start + len(chunk)
        batch = Batch()
        self.decider.decide(batch, records, applied=self.decided, partitions=PARTITIONS, refused=self.refused)
        for out in batch.out:
            if out.topic == TOPIC:  # a re-keyed copy; dead letters leave the topic
                self.topic.append(out.key, out.value, out.headers)
        if not self.flush(crash):
            return
        for partition, offset in batch.next_offsets.items():
            self.decided[partition] = max(offset, self.decided.get(partition, 0))
        self.pending = batch

    def flush(self, crash: str | None = None) -> bool:
        """The writer's turn: store the pending batch, then the table, then ack. False: crashed on the way."""
        batch, self.pending = self.pending, None
        if batch is not None and crash != "before the store":
            run(self.sink.write(TOPIC, batch.outcomes, batch.next_offsets))
            if crash != "after the store":
                self.published += [
                    o.state.event_id for o in (*batch.outcomes, *batch.replayed) if o.decision in NEW_ROW and o.state
                ]
                self.table.update({fp: st for fp, st in batch.overlay.items() if st is not None})
                for partition, ts in batch.newest.items():
                    self.clock[partition] = max(ts, self.clock.get(partition, 0))
                if crash != "after the table":
                    for partition, offset in batch.next_offsets.items():
                        if self.rng.random() < 0.7:  # Faust commits acked offsets now and then, not each ack
                            self.committed[partition] = max(offset, self.committed.get(partition, 0))
        if crash is not None and batch is not None:
            self.crashes += 1
            self.restart()
            return False
        return True

    def expire(self) -> None:
        """Drop states past the horizon at their partition's stream time, as expiry.py does."""
        for fp, held in list(self.table.items()):
            now = self.clock.get(key_partition(fp.encode(), PARTITIONS), 0)
            if state.expired(held, now, RULES.horizon_ms):
                del self.table[fp]

    def drain(self) -> None:
        while any(self.position.get(p, 0) < len(log) for p, log in self.topic.log.items()):
            self.cycle()
        self.flush()


def run(coro: Any) -> Any:
    """The result of a coroutine of MemorySink, which never waits on anything: no event loop needed."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("MemorySink awaited something")


CRASHES = ["before the store", "after the store", "after the table"]


def play(steps: list[tuple[str, Any]], rng: random.Random) -> tuple[Topic, Worker]:
    topic = Topic(rng)
    worker = Worker(topic, MemorySink(), rng)
    previous: tuple[bytes | None, bytes] | None = None
    for kind, arg in steps:
        topic.clock_ms += PAUSE_MS if kind == "pause" else rng.randrange(0, 200)
        if kind == "poison":
            topic.append(None, arg)
        elif kind == "send" or (kind == "again" and previous is not None):
            previous = message(arg, "decider", NOW) if kind == "send" else previous
            topic.append(*previous)
        if rng.random() < 0.4:
            worker.cycle(crash=rng.choice(CRASHES) if rng.random() < 0.1 else None)
        if rng.random() < 0.1:
            worker.expire()
    worker.drain()
    return topic, worker


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
    print_blob=True,
)
@given(steps=streams, seed=st.integers(0, 2**32))  # the seed: batch sizes, crash moments, partitions of unkeyed
def test_the_decider_leaves_the_models_rows(steps: list[tuple[str, Any]], seed: int) -> None:
    topic, worker = play(steps, random.Random(seed))
    model = expected(topic.messages(), MODEL_RULES, PARTITIONS)
    assert event_tuples(worker.sink.event_tuples()) == event_tuples(model.events)
    assert alert_tuples(worker.sink.alert_tuples()) == alert_tuples(model.alerts.values())
    # The events topic: every stored row's event at least once (repeated after a crash), none that is not stored.
    assert set(worker.published) == set(worker.sink.events)


def test_the_worker_of_this_test_does_crash_and_replay() -> None:
    """The property above is only as strong as its crashes: over many streams each kind happens."""
    rng = random.Random(5)
    crashes = 0
    for _ in range(200):
        steps = [("send", {"alert": rng.randrange(3), "status": rng.choice(["firing", "resolved", None]),
                           "episode": rng.randrange(3), "ends": "none", "key": "fingerprint",
                           "with_fingerprint": True}) for _ in range(30)]  # fmt: skip
        _, worker = play(steps, rng)
        crashes += worker.crashes
    assert crashes > 50
