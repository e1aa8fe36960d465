"""How times are written (app/events.py): the fast paths write exactly what datetime's isoformat writes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.events import rfc3339, rfc3339_ms
from app.records import EPOCH, MILLISECOND


def reference(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1764763200123, "2025-12-03T12:00:00.123Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (-62135596800000, "0001-01-01T00:00:00.000Z"),
        (253402300799999, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_milliseconds_are_written_as_the_api_writes_times(ms: int, expected: str) -> None:
    assert rfc3339_ms(ms) == expected
    assert rfc3339(EPOCH + ms * MILLISECOND) == expected


def test_any_aware_time_is_written_as_isoformat_writes_it_in_utc() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        offset = timezone(timedelta(minutes=rng.randint(-900, 900)))
        value = (EPOCH + timedelta(microseconds=rng.randint(-62_000_000_000_000_000, 250_000_000_000_000_000)))
        value = value.astimezone(offset)
        assert rfc3339(value) == reference(value), value
        ms = (value - EPOCH) // MILLISECOND
        assert rfc3339_ms(ms) == reference(EPOCH + ms * MILLISECOND)


def test_a_naive_time_and_none_are_written_as_before() -> None:
    naive = datetime(2026, 12, 3, 12, 0, 0, 999_999)
    assert rfc3339(naive) == reference(naive)
    assert rfc3339(None) is None
