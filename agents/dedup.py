"""Stage 2 — dedup: a pure decision per event, given what the table remembers of its fingerprint.

The clock is the message timestamp (the topic is created with LogAppendTime), so a replay of the
same messages takes the same decisions: that is what makes recovery deterministic.
"""

from __future__ import annotations

from app.records import AlertEvent, Decision, FingerprintState, Position


def decide(state: FingerprintState | None, event: AlertEvent, *, window_ms: int) -> Decision:
    if state is not None and _already_applied(state, event):
        return Decision.REPLAYED
    if state is None or event.seen_ms - state.last_seen_ms > window_ms:
        # Nothing remembered, or silent for a whole window: the same decision whether or not the
        # expiry timer has dropped the state yet, so replays and restarts decide alike.
        return Decision.FIRST_SEEN
    starts = event.starts_at_ms
    if starts < state.starts_at_ms:
        return Decision.LATE  # a resend of an older episode: the history already moved past it
    if starts > state.starts_at_ms:
        return Decision.TRANSITION  # a new episode
    if event.status != state.status:
        # Same episode: firing → resolved moves on; a firing copy overtaken by its own resolve
        # (HA pairs race, producers retry) must not reopen the episode.
        return Decision.TRANSITION if state.status == "firing" else Decision.LATE
    return Decision.DUPLICATE


def decide_resend(state: FingerprintState, position: Position, *, window_ms: int) -> Decision:
    """`decide` for a message byte-identical to the one the state last applied (its value_hash): the same
    status and startsAt as the state, no origin. FIRST_SEEN means the event must be decoded after all."""
    if position.offset <= state.offset:
        return Decision.REPLAYED
    if position.timestamp_ms - state.last_seen_ms > window_ms:
        return Decision.FIRST_SEEN
    return Decision.DUPLICATE


def _already_applied(state: FingerprintState, event: AlertEvent) -> bool:
    # One fingerprint is always read from one partition, so offsets compare.
    if event.position.offset <= state.offset:
        return True
    return event.origin is not None and event.origin in state.origins
