"""Stage 3 — state: advance a fingerprint's state by one decided event; count transitions for flapping.

Pure: the same (state, event, decision) always yields the same new state.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.records import NEW_ROW, AlertEvent, Decision, FingerprintState, Position

MAX_ORIGINS = 16  # a re-keyed copy produced twice arrives within a few messages of the first
# Event ids: topic code (13 bits) | partition (10 bits) | offset (40 bits) — 63 bits, a positive bigint.
_OFFSET_BITS = 40
_PARTITION_BITS = 10


@dataclass(frozen=True, slots=True)
class FlapRule:
    window_ms: int
    threshold: int


def event_id(topic_code: int, partition: int, offset: int) -> int:
    """Deterministic row id of the event first read at this position: replays write the same id."""
    return (topic_code << (_PARTITION_BITS + _OFFSET_BITS)) | (partition << _OFFSET_BITS) | offset


def advance(
    state: FingerprintState | None, event: AlertEvent, decision: Decision, flap: FlapRule, topic_code: int = 0
) -> FingerprintState | None:
    if decision is Decision.REPLAYED:
        return state
    pos = event.position
    origins = _remember(state.origins if state else [], event.origin)
    if state is not None and decision not in NEW_ROW:
        # LATE leaves the history (and the alerts row) as it is; DUPLICATE grows the stored row's counters.
        if decision is Decision.DUPLICATE:
            return _again(state, pos, origins, event.value_hash)
        return _again(state, pos, origins, state.value_hash, duplicate=False)
    # Every new row is a transition for flapping, a first sighting too; earlier ones count while
    # inside the flap window, even across a dedup window of silence (the state lives for both).
    transitions = [t for t in (state.transitions_ms if state else ()) if event.seen_ms - t <= flap.window_ms]
    transitions.append(event.seen_ms)
    return FingerprintState(
        event_id=event_id(topic_code, pos.partition, pos.offset),
        status=event.status,
        starts_at_ms=event.starts_at_ms,
        received_ms=event.seen_ms,
        last_seen_ms=event.seen_ms,
        duplicates=0,
        transitions_ms=transitions,
        flapping=len(transitions) >= flap.threshold,
        offset=pos.offset,
        origins=origins,
        value_hash=event.value_hash,
    )


def resent(state: FingerprintState, position: Position) -> FingerprintState:
    """`advance` for a DUPLICATE that is a resend of the message the state last applied (see decide_resend)."""
    return _again(state, position, state.origins, state.value_hash)


def _again(
    state: FingerprintState, pos: Position, origins: list[str], value_hash: str | None, *, duplicate: bool = True
) -> FingerprintState:
    return FingerprintState(
        event_id=state.event_id,
        status=state.status,
        starts_at_ms=state.starts_at_ms,
        received_ms=state.received_ms,
        last_seen_ms=max(state.last_seen_ms, pos.timestamp_ms) if duplicate else state.last_seen_ms,
        duplicates=state.duplicates + 1 if duplicate else state.duplicates,
        transitions_ms=state.transitions_ms,
        flapping=state.flapping,
        offset=pos.offset,
        origins=origins,
        value_hash=value_hash,
    )


def expired(state: FingerprintState, now_ms: int, horizon_ms: int) -> bool:
    """State no event can consult any more: `now_ms` is the stream time of its partition, and
    `horizon_ms` the longest window that looks back at it (dedup or flap)."""
    return now_ms - state.last_seen_ms > horizon_ms


def _remember(origins: list[str], origin: str | None) -> list[str]:
    if origin is None:
        return origins
    return [*origins, origin][-MAX_ORIGINS:]
