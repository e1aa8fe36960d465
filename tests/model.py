"""The reference model: DESIGN.md's dedup / state / flap rules as one plain function over the topic.

No batches, no table, no offsets bookkeeping, no expiry timer: every message of the topic, as a
reader of the topic sees it, is applied in order to a dict per fingerprint. The streaming pipeline
must leave exactly these rows in PostgreSQL, however it batches, crashes, rebalances or replays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from app.fingerprint import fingerprint as alertmanager_fingerprint

NO_END = "0001-01-01T00:00:00Z"
ORIGIN_HEADER = "alert-history-origin"


@dataclass(frozen=True)
class Message:
    """One topic message as a consumer reads it back."""

    partition: int
    offset: int
    timestamp_ms: int  # LogAppendTime: the model's only clock, as it is the pipeline's
    value: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)
    key: bytes | None = None


@dataclass(frozen=True)
class Rules:
    dedup_window_s: float
    flap_window_s: float
    flap_threshold: int


@dataclass
class EventRow:
    fingerprint: str
    status: str
    starts_at: datetime
    ends_at: datetime | None
    received_at: datetime
    last_seen_at: datetime
    duplicates: int
    flapping: bool
    decision: str


@dataclass
class AlertRow:
    fingerprint: str
    status: str
    starts_at: datetime
    since: datetime
    last_seen_at: datetime
    episodes: int
    flapping: bool


@dataclass
class History:
    events: list[EventRow] = field(default_factory=list)
    alerts: dict[str, AlertRow] = field(default_factory=dict)


def _time(text: str | None) -> datetime | None:
    if text is None or text == NO_END:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ms(t: datetime) -> datetime:
    """The pipeline compares startsAt, and keeps it in `alerts`, to the millisecond."""
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def expected(messages: Iterable[Message], rules: Rules, partitions: int) -> History:
    history = History()
    row: dict[str, EventRow] = {}  # the row duplicates are counted on
    transitions: dict[str, list[datetime]] = {}
    origins: set[tuple[str, str]] = set()
    window, flap_window = rules.dedup_window_s, rules.flap_window_s
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        seen = datetime.fromtimestamp(m.timestamp_ms / 1000, tz=UTC)
        try:
            body: dict[str, Any] = orjson.loads(m.value)
            labels = body["labels"]
            if not isinstance(labels, dict) or not labels:
                continue  # dead letter
            fp = body.get("fingerprint") or alertmanager_fingerprint(labels)
            starts = _time(body.get("startsAt")) or seen
            ends = _time(body.get("endsAt"))
            status = body.get("status") or ("resolved" if ends is not None and ends <= seen else "firing")
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # dead letter
        if (murmur2(fp.encode()) & 0x7FFFFFFF) % partitions != m.partition:
            continue  # read from the wrong partition: the pipeline re-keys it; its copy comes later
        origin = m.headers.get(ORIGIN_HEADER)
        if origin is not None:
            if (fp, origin.decode()) in origins:
                continue  # the same misplaced message re-keyed twice
            origins.add((fp, origin.decode()))

        last = row.get(fp)
        if last is not None and (seen - last.last_seen_at).total_seconds() > window:
            last = None  # silent for a whole dedup window: as if never seen
        if last is not None:
            if _ms(starts) < _ms(last.starts_at):
                continue  # late: a resend of an older episode
            if _ms(starts) == _ms(last.starts_at) and status == last.status:
                last.duplicates += 1
                last.last_seen_at = max(last.last_seen_at, seen)
                history.alerts[fp].last_seen_at = last.last_seen_at
                continue
            if _ms(starts) == _ms(last.starts_at) and last.status == "resolved":
                continue  # late: a firing copy overtaken by its own resolve
        # Every new row is a transition for flapping, counted across dedup silence too.
        flips = [t for t in transitions.get(fp, []) if (seen - t).total_seconds() <= flap_window] + [seen]
        transitions[fp] = flips
        flapping = len(flips) >= rules.flap_threshold
        decision = "first_seen" if last is None else "transition"
        new = EventRow(fp, status, starts, ends, seen, seen, 0, flapping, decision)
        history.events.append(new)
        row[fp] = new
        alert = history.alerts.get(fp)
        # An episode is one startsAt: a new row opens one unless it continues the alert's current one.
        episodes = (alert.episodes if alert else 0) + (alert is None or alert.starts_at != _ms(starts))
        history.alerts[fp] = AlertRow(fp, status, _ms(starts), seen, seen, episodes, flapping)
    return history


EVENT_COLUMNS = "fingerprint, status, starts_at, ends_at, received_at, last_seen_at, duplicates, flapping, decision"
ALERT_COLUMNS = "fingerprint, status, starts_at, since, last_seen_at, episodes, flapping"


def event_tuples(rows: Iterable[EventRow | Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows of either side as sorted tuples of EVENT_COLUMNS."""
    out = [
        (r.fingerprint, r.status, r.starts_at, r.ends_at, r.received_at, r.last_seen_at, r.duplicates, r.flapping,
         r.decision) if isinstance(r, EventRow) else tuple(r)
        for r in rows
    ]  # fmt: skip
    # A total order: two rows of a fingerprint can share receivedAt and status (a flap within one batch), and
    # PostgreSQL returns rows in no set order (the enrich agent's updates move them).
    return sorted(out, key=lambda r: (r[0], r[4], r[1], repr(r)))


def alert_tuples(rows: Iterable[AlertRow | Sequence[Any]]) -> list[tuple[Any, ...]]:
    out = [
        (r.fingerprint, r.status, r.starts_at, r.since, r.last_seen_at, r.episodes, r.flapping)
        if isinstance(r, AlertRow) else tuple(r)
        for r in rows
    ]  # fmt: skip
    return sorted(out)
