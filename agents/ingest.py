"""Stage 1 — ingest: decode and validate one topic message, and check it sits where its fingerprint belongs.

Pure functions; the pipeline agent calls them and moves the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache

from aiokafka.partitioner import murmur2
from pydantic import ValidationError

from app.fingerprint import fingerprint as compute_fingerprint
from app.models import PATTERN_ERRORS, AlertIn, utc
from app.records import EPOCH, MILLISECOND, AlertEvent, Position

# Header a re-keyed copy carries, so a copy produced twice (crash before commit) counts once.
ORIGIN_HEADER = "alert-history-origin"
# Headers of a dead letter: why it went there, and topic/partition/offset it came from.
DLQ_REASON_HEADER = "alert-history-error"
SOURCE_HEADER = "alert-history-source"


class Rejected(Exception):
    """A message that is not an alert per the topic contract; `reason` names the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_validation_error(exc: ValidationError) -> str:
    """First problem of a pydantic error as 'field.path: message', the form every 4xx/DLQ reason uses."""
    err = exc.errors()[0]
    path = list(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "json_invalid":
        return f"body is not valid JSON: {err.get('ctx', {}).get('error', msg)}"
    if err["type"] == "string_pattern_mismatch":
        if path and path[-1] == "[key]":
            path = path[:-2]  # a bad key: name the mapping it is in
        msg = PATTERN_ERRORS.get(err["ctx"]["pattern"], msg).format(input=err["input"])
    loc = ".".join(str(p) for p in path) or "body"
    return f"{loc}: {msg}"


def decode(value: bytes | None, position: Position, headers: Mapping[str, bytes] | None = None) -> AlertEvent:
    """Topic message → AlertEvent, deriving fingerprint and status as Alertmanager does."""
    if not value:
        raise Rejected("empty message: expected one JSON alert object")
    try:
        alert = AlertIn.model_validate_json(value)
    except ValidationError as exc:
        raise Rejected(describe_validation_error(exc)) from None
    return to_event(alert, position, origin=_header(headers, ORIGIN_HEADER), value=value)


def value_hash(value: bytes) -> str:
    """Digest of a message's bytes: 128 bits, so two different messages of a fingerprint never pass for each other."""
    return hashlib.blake2b(value, digest_size=16).hexdigest()


def to_event(alert: AlertIn, position: Position, origin: str | None = None, value: bytes | None = None) -> AlertEvent:
    """`value`: the message's bytes, digested when they alone decide the event (see AlertEvent.value_hash)."""
    seen = EPOCH + position.timestamp_ms * MILLISECOND
    fp = alert.fingerprint or compute_fingerprint(alert.labels)
    starts_at, ends_at = utc(alert.startsAt), utc(alert.endsAt)
    status = alert.status or derive_status(ends_at, seen)
    # Without status or startsAt the event depends on the message time too, not on its bytes alone.
    decides_alone = value is not None and origin is None and alert.status is not None and starts_at is not None
    return AlertEvent(
        fingerprint=fp,
        status=status,
        labels=alert.labels,
        annotations=alert.annotations,
        # Alertmanager stamps a missing startsAt with its receive time; our receive time is the message's.
        starts_at=starts_at or seen,
        ends_at=ends_at,
        generator_url=alert.generatorURL,
        source=alert.source,
        receiver=alert.receiver,
        position=position,
        origin=origin,
        value_hash=value_hash(value) if decides_alone else None,  # type: ignore[arg-type]
    )


def derive_status(ends_at: datetime | None, now: datetime) -> str:
    """Alertmanager: resolved once endsAt is set and not in the future."""
    return "resolved" if ends_at is not None and ends_at <= now else "firing"


def owner_partition(fingerprint: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for this key.

    State is partitioned like this too, so a fingerprint's events must all be read from here.
    """
    return key_partition(fingerprint.encode(), partitions)


@lru_cache(maxsize=1 << 17)  # murmur2 is pure Python; the live fingerprints recur all day
def key_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (Java's and aiokafka's): murmur2 of the key bytes."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def misplaced(event: AlertEvent, partitions: int) -> bool:
    """True when the producer keyed the message otherwise (or not at all, or with another partitioner)."""
    return event.position.partition != owner_partition(event.fingerprint, partitions)


def _header(headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return None
