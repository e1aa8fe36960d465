"""The event as users see it: one stored row of alert_events, in the shape `/history` returns, `/events` streams
and the `alerts-events` topic carries (a public contract: DESIGN.md, HTTP API). Built here from a stored row
or from the history agent's outcome, so the two can never drift apart."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from app.records import EPOCH, MILLISECOND, Outcome


def rfc3339(value: datetime | None) -> str | None:
    """UTC, to the millisecond, `Z`: how every time of the API is written."""
    if value is None:
        return None
    if value.tzinfo is not None:
        return rfc3339_ms((value - EPOCH) // MILLISECOND)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc3339_ms(ms: int) -> str:
    """`rfc3339` of a time in milliseconds since the epoch, without a datetime: the date and time of its second
    are formatted once (the history agent writes two such times per event it puts on the events topic)."""
    second, millis = divmod(ms, 1000)
    if not 0 <= second < _YEAR_10000:  # strftime writes years before 1000 unpadded; the fast path keeps to 1970 on
        return (EPOCH + ms * MILLISECOND).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{_second(second)}.{millis:03d}Z"


_YEAR_10000 = 253_402_300_800  # seconds since the epoch


@lru_cache(maxsize=1024)
def _second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An alert_events row (web/queries.py's EVENT_COLUMNS) as the event."""
    return {
        "id": str(row["id"]),  # 63-bit: a string, so JavaScript clients keep every digit
        "fingerprint": row["fingerprint"],
        "status": row["status"],
        "labels": row["labels"],
        "annotations": row["annotations"],
        "startsAt": rfc3339(row["starts_at"]),
        "endsAt": rfc3339(row["ends_at"]),
        "generatorURL": row["generator_url"],
        "receivedAt": rfc3339(row["received_at"]),
        "lastSeenAt": rfc3339(row["last_seen_at"]),
        "duplicates": row["duplicates"],
        "flapping": row["flapping"],
        "severity": row["severity"],
        "classification": row["classification"],  # the enrich agent's; null until it has seen the event
        "filter": row["filter"],  # the filter rule that decided whether it is published; null until decided
    }


def from_outcome(o: Outcome) -> dict[str, Any]:
    """A new row the history agent stores, as the event when it is stored (no resend counted yet, not enriched)."""
    e, st = o.event, o.state
    assert e is not None and st is not None, "a new row is a decoded event with its state"
    return {
        "id": str(st.event_id),
        "fingerprint": e.fingerprint,
        "status": e.status,
        "labels": e.labels,
        "annotations": e.annotations,
        "startsAt": rfc3339(e.starts_at),
        "endsAt": rfc3339(e.ends_at),
        "generatorURL": e.generator_url,
        "receivedAt": rfc3339_ms(st.received_ms),
        "lastSeenAt": rfc3339_ms(st.last_seen_ms),
        "duplicates": st.duplicates,
        "flapping": st.flapping,
        "severity": o.severity,
        "classification": None,
        "filter": None,
    }
