"""The history agent's decider: a batch of topic messages and a state lookup → decisions, rows, out-messages.

Pure and synchronous: no I/O, no clock but the messages' own timestamps, no metrics. The same messages and
the same states always give the same batch, which is what makes replays and restarts safe. Per message:
ingest (decode, or the resend shortcut) → dedup (a named decision) → state (advance) → enrich (severity).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord

from agents import dedup, enrich, ingest, state
from app.partition import key_partition
from app.produce import OutMessage
from app.records import NEW_ROW, AlertEvent, Decision, FingerprintState, Outcome, Position
from app.validation import Rejected

MAX_REASON = 1000  # characters of an exception's text in a dead letter's reason header

# A fingerprint's state as known before this batch: the batch being written, then the table.
Lookup = Callable[[str, int], FingerprintState | None]


@dataclass(frozen=True, slots=True)
class Rules:
    """The dedup and flap rules, in milliseconds of message time."""

    window_ms: int
    flap: state.FlapRule

    @property
    def horizon_ms(self) -> int:
        """How long a state is looked back at: for dedup within window_ms, for flapping within the flap window."""
        return max(self.window_ms, self.flap.window_ms)


@dataclass
class Batch:
    """What deciding a batch of messages produced."""

    outcomes: list[Outcome] = field(default_factory=list)  # what PostgreSQL must hold after this batch
    # New rows of replayed messages: stored before, but their events may not have reached the events topic.
    replayed: list[Outcome] = field(default_factory=list)
    out: list[OutMessage] = field(default_factory=list)  # dead letters and re-keyed copies
    overlay: dict[str, FingerprintState | None] = field(default_factory=dict)  # states after the batch
    partition: dict[str, int] = field(default_factory=dict)  # of each fingerprint looked up
    looked_up: dict[str, FingerprintState | None] = field(default_factory=dict)  # states before the batch
    next_offsets: dict[int, int] = field(default_factory=dict)
    newest: dict[int, int] = field(default_factory=dict)  # partition → newest message time
    decisions: Counter[Decision] = field(default_factory=Counter)
    resends: int = 0  # decided from their digest, not decoded
    dead_letters: int = 0
    rekeyed: int = 0
    failures: list[tuple[Position, str]] = field(default_factory=list)  # messages deciding raised on


def dead_letter(dlq_topic: str, msg: ConsumerRecord, reason: str) -> OutMessage:
    """The message as it was, to the dead-letter topic, with why and where it came from in its headers."""
    headers = (
        (ingest.DLQ_REASON_HEADER, reason.encode()),
        (ingest.SOURCE_HEADER, f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
    )
    return OutMessage(dlq_topic, msg.key, msg.value or b"", None, headers)


class Decider:
    def __init__(self, rules: Rules, *, topic: str, dlq_topic: str, topic_code: int, lookup: Lookup) -> None:
        self.rules = rules
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.topic_code = topic_code
        self.lookup = lookup

    def decide(
        self,
        batch: Batch,
        records: Sequence[ConsumerRecord],
        *,
        applied: Mapping[int, int],
        partitions: int,
        refused: Mapping[tuple[int, int], str],
    ) -> None:
        """Add these messages to `batch`. `applied`: per partition, the next offset whose effect is not stored
        (or being stored) yet: messages below it only replay their effect on the state. `refused`: messages
        PostgreSQL refused, decided as if they were not on the topic."""
        for msg in records:
            position = Position(msg.topic, msg.partition, msg.offset, msg.timestamp)
            replay = msg.offset < applied.get(msg.partition, 0)
            batch.next_offsets[msg.partition] = msg.offset + 1
            batch.newest[msg.partition] = position.timestamp_ms  # LogAppendTime: the clock update takes the max
            if (msg.partition, msg.offset) in refused:
                continue
            try:
                self._one(batch, msg, position, replay, partitions)
            except Exception as exc:
                # Input nothing foresaw, or a bug: that message is dead-lettered, never the pipeline stopped.
                reason = f"internal error: {exc!r}"[:MAX_REASON]
                batch.failures.append((position, reason))
                if not replay:
                    self.dead_letter(batch, msg, reason)

    def _one(self, batch: Batch, msg: ConsumerRecord, position: Position, replay: bool, partitions: int) -> None:
        """One message into the batch. Raises before changing the batch, or changes it completely."""
        if msg.key and not msg.headers and self._resend(batch, msg, position, replay, partitions):
            return
        try:
            event = ingest.decode(msg.value, position, msg.headers)
        except Rejected as exc:
            if not replay:
                self.dead_letter(batch, msg, exc.reason)
            return
        if ingest.misplaced(event, partitions):
            if not replay:
                batch.rekeyed += 1
                origin = f"{msg.partition}/{msg.offset}"
                headers = ((ingest.ORIGIN_HEADER, origin.encode()),)
                batch.out.append(OutMessage(self.topic, event.fingerprint.encode(), msg.value, None, headers))
            return
        self._apply(batch, event, replay)

    def dead_letter(self, batch: Batch, msg: ConsumerRecord, reason: str) -> None:
        batch.dead_letters += 1
        batch.out.append(dead_letter(self.dlq_topic, msg, reason))

    def _state(self, batch: Batch, fingerprint: str, partition: int) -> FingerprintState | None:
        """The fingerprint's state as this batch has it: its overlay, then what the lookup knows."""
        if fingerprint in batch.overlay:
            return batch.overlay[fingerprint]
        if fingerprint not in batch.looked_up:
            batch.looked_up[fingerprint] = self.lookup(fingerprint, partition)
            batch.partition[fingerprint] = partition
        return batch.looked_up[fingerprint]

    def _resend(self, batch: Batch, msg: ConsumerRecord, position: Position, replay: bool, partitions: int) -> bool:
        """Decide a message byte-identical to the one its fingerprint's state last applied, without decoding it
        (most of the stream: Alertmanager's repeat_interval resends and HA copies). False: decode it."""
        if key_partition(msg.key, partitions) != msg.partition:
            return False
        try:
            fp = msg.key.decode("ascii")
        except UnicodeDecodeError:
            return False
        prev = self._state(batch, fp, msg.partition)
        if prev is None or prev.value_hash is None or prev.value_hash != ingest.value_hash(msg.value or b""):
            return False
        decision = dedup.decide_resend(prev, position, window_ms=self.rules.window_ms)
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
        decision = dedup.decide(prev, event, window_ms=self.rules.window_ms)
        new = state.advance(prev, event, decision, self.rules.flap, self.topic_code)
        outcome = None
        if decision is not Decision.REPLAYED and (not replay or decision in NEW_ROW):
            outcome = Outcome(
                fingerprint=fp,
                position=event.position,
                decision=decision,
                state=new,
                event=event,
                # Without a state to compare with (first sighting, or state expired) the sink asks the alerts row.
                opens_episode=None if prev is None else decision in NEW_ROW and event.starts_at_ms != prev.starts_at_ms,
                severity=enrich.severity(event),
            )
        # Only now, with nothing left to fail, does the batch change.
        batch.overlay[fp] = new
        batch.decisions[decision] += 1
        if outcome is not None:
            (batch.replayed if replay else batch.outcomes).append(outcome)
