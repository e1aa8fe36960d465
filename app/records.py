"""Typed records the pipeline stages hand to each other (never loose dicts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
MICROSECOND = timedelta(microseconds=1)


@dataclass(slots=True, frozen=True)
class Position:
    """Where a message sits in Kafka; ids and exactly-once bookkeeping derive from it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # broker/producer time of the message: the pipeline's only clock


@dataclass(slots=True)
class AlertEvent:
    """One decoded, validated alert occurrence as read from the topic."""

    fingerprint: str
    status: str  # "firing" | "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    source: str | None
    receiver: str | None
    position: Position
    origin: str | None = None  # "partition/offset" of the message this was re-keyed from
    # Digest of the message's bytes when they alone decide the event (status and startsAt given, no origin):
    # a byte-identical message later is then the same event again.
    value_hash: str | None = None

    @property
    def seen_ms(self) -> int:
        return self.position.timestamp_ms

    @property
    def starts_at_ms(self) -> int:
        # Integer arithmetic: a float timestamp can land a millisecond short (…568 → 567.9999).
        return (self.starts_at - EPOCH) // MILLISECOND


class Decision(StrEnum):
    """Why an event did (or did not) change the history: each stage's output is one of these."""

    FIRST_SEEN = "first_seen"  # nothing seen of this fingerprint within the dedup window: a new row
    TRANSITION = "transition"  # status changed or a new startsAt: a new row
    DUPLICATE = "duplicate"  # same event within the window: counters grow on the stored row
    LATE = "late"  # belongs to an older episode than the one stored: history unchanged
    REPLAYED = "replayed"  # this message's effect is already in the state (redelivery)


NEW_ROW = frozenset({Decision.FIRST_SEEN, Decision.TRANSITION})


@dataclass(slots=True)
class FingerprintState:
    """What the dedup table remembers per fingerprint (value of the `fingerprint-state` table)."""

    event_id: int  # alert_events.id of the row duplicates are counted on
    status: str
    starts_at_ms: int
    received_ms: int  # when the current row was first seen
    last_seen_ms: int
    duplicates: int
    transitions_ms: list[int]  # transition times inside the flap window, oldest first
    flapping: bool
    offset: int  # last message offset applied to this state (its partition is fixed by the key)
    origins: list[str] = field(default_factory=list)  # recent re-keyed origins, to drop a re-key produced twice
    # value_hash of the message whose content the alerts row holds (the last new row or duplicate): a message
    # with the same digest is a resend of it and is decided without being decoded.
    value_hash: str | None = None


@dataclass(slots=True)
class Outcome:
    """One event after dedup, state and enrichment: what the sink must make true in PostgreSQL."""

    fingerprint: str
    position: Position
    decision: Decision
    state: FingerprintState | None
    # None for a resend: byte-identical to the message the state last applied, so not decoded; only the
    # counters of its row and the alert's last sighting change.
    event: AlertEvent | None = None
    # A new startsAt for this fingerprint (alerts.episodes counts these); None: no state left to tell.
    opens_episode: bool | None = False
    severity: str = "none"
    extra: dict[str, str] = field(default_factory=dict)
