"""The publish agent's decisions, pure: which targets an event goes to, and at a delivery's turn (every earlier
delivery of its fingerprint to that target has ended) whether to send it, from what the ledger holds.

Order per (target, fingerprint) is kept by the lanes (one delivery at a time, in topic order); what is decided
here keeps it across restarts, replays and the dead-letter topic:
- a recorded success is final: never sent again (a repeat of the topic, a restart, a replay);
- nothing goes back in time: once a later event of the fingerprint reached the target, an earlier one is
  superseded (a replayed firing would re-open a PagerDuty alert whose resolve was already delivered);
- a resolve whose firing (same startsAt) went to the dead-letter topic follows it there, so the target never
  gets the resolve of a firing it never saw, and `dlq replay` delivers the two in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sinks.publishers.base import Target, matches
from sinks.publishers.message import NotifyMessage

TOPIC_CODE_SHIFT = 50  # event ids: topic code | partition | offset (agents/state.py)


class Outcome(StrEnum):
    """What the ledger records of a delivery."""

    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"
    SUPERSEDED = "superseded"


class Verdict(StrEnum):
    SEND = "send"
    ALREADY_DELIVERED = "already_delivered"
    ALREADY_DEAD_LETTERED = "already_dead_lettered"  # live path: the dead-letter topic holds it; replay sends it
    SUPERSEDED = "superseded"
    FOLLOWS_FIRING = "follows_firing"


@dataclass(frozen=True, slots=True)
class Key:
    """One delivery: an event to a target."""

    event_id: int
    target: str
    fingerprint: str
    status: str
    starts_at: datetime

    @classmethod
    def of(cls, message: NotifyMessage, target: str) -> Key:
        e = message.event
        return cls(e.event_id, target, e.fingerprint, e.status, e.startsAt)

    @property
    def pipeline_ids(self) -> tuple[int, int]:
        """The range of event ids of this event's topic: only those are ordered with it."""
        code = self.event_id >> TOPIC_CODE_SHIFT
        return code << TOPIC_CODE_SHIFT, ((code + 1) << TOPIC_CODE_SHIFT) - 1


@dataclass(frozen=True, slots=True)
class Recorded:
    event_id: int
    status: str
    starts_at: datetime
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Past:
    """What the ledger holds for a delivery's (target, fingerprint) at its turn."""

    own: Outcome | None = None  # this very delivery, from an earlier try
    newest_delivered: int | None = None  # the greatest event id of the fingerprint delivered to the target
    previous: Recorded | None = None  # the delivery of the greatest event id below this one


def decide(key: Key, past: Past, *, replay: bool = False) -> Verdict:
    """Send, or why not. `replay`: the delivery comes from the dead-letter topic (`dlq replay`)."""
    if past.own is Outcome.DELIVERED:
        return Verdict.ALREADY_DELIVERED
    if past.own is Outcome.SUPERSEDED:
        return Verdict.SUPERSEDED
    if past.own is Outcome.DEAD_LETTERED and not replay:
        return Verdict.ALREADY_DEAD_LETTERED
    if past.newest_delivered is not None and past.newest_delivered > key.event_id:
        return Verdict.SUPERSEDED
    prev = past.previous
    if (
        key.status == "resolved"
        and prev is not None
        and prev.outcome is Outcome.DEAD_LETTERED
        and prev.status == "firing"
        and prev.starts_at == key.starts_at
    ):
        return Verdict.FOLLOWS_FIRING
    return Verdict.SEND


def targets_for(message: NotifyMessage, targets: Sequence[Target]) -> list[Target]:
    """Every target whose matchers hold for the event (its labels, with the classification's severity)."""
    labels = message.event.match_labels()
    return [t for t in targets if matches(t, labels)]
