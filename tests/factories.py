"""Factories with every field a keyword default, shared by the test areas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.records import AlertEvent, Position

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    *,
    fingerprint: str = "0123456789abcdef",
    status: str = "firing",
    starts: float = 0,
    seen: float = 0,
    offset: int = 0,
    partition: int = 0,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    origin: str | None = None,
    ends: float | None = None,
    value_hash: str | None = None,
) -> AlertEvent:
    """An event whose startsAt and message time are given in seconds after T0."""
    return AlertEvent(
        fingerprint=fingerprint,
        status=status,
        labels=labels or {"alertname": "Test"},
        annotations=annotations or {},
        starts_at=at(starts),
        ends_at=at(ends) if ends is not None else None,
        generator_url="",
        source=None,
        receiver=None,
        position=Position("alerts", partition, offset, T0_MS + int(seen * 1000)),
        origin=origin,
        value_hash=value_hash,
    )
