"""Stage 1 — ingest: decode and validate one topic message, and check it sits where its fingerprint belongs.

Pure functions; the pipeline agent calls them and moves the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

from app.partition import fingerprint_partition
from app.records import EPOCH, MILLISECOND, AlertEvent, Position
from app.validation import ValidAlert, parse

# Header a re-keyed copy carries, so a copy produced twice (crash before commit) counts once.
ORIGIN_HEADER = "alert-history-origin"
# Headers of a dead letter: why it went there, and topic/partition/offset it came from.
DLQ_REASON_HEADER = "alert-history-error"
SOURCE_HEADER = "alert-history-source"


def decode(value: bytes | None, position: Position, headers: Mapping[str, bytes] | None = None) -> AlertEvent:
    """Topic message → AlertEvent, deriving fingerprint and status as Alertmanager does."""
    return to_event(parse(value or b""), position, origin=_header(headers, ORIGIN_HEADER), value=value)


def value_hash(value: bytes) -> str:
    """Digest of a message's bytes: 128 bits, so two different messages of a fingerprint never pass for each other."""
    return hashlib.blake2b(value, digest_size=16).hexdigest()


def to_event(
    valid: ValidAlert, position: Position, origin: str | None = None, value: bytes | None = None
) -> AlertEvent:
    """`value`: the message's bytes, digested when they alone decide the event (see AlertEvent.value_hash)."""
    alert = valid.alert
    seen = EPOCH + position.timestamp_ms * MILLISECOND
    starts_at, ends_at = valid.starts_at, valid.ends_at
    status = alert.status or derive_status(ends_at, seen)
    # Without status or startsAt the event depends on the message time too, not on its bytes alone.
    decides_alone = value is not None and origin is None and alert.status is not None and starts_at is not None
    return AlertEvent(
        fingerprint=valid.fingerprint,
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
        value_hash=value_hash(value) if decides_alone and value is not None else None,
    )


def derive_status(ends_at: datetime | None, now: datetime) -> str:
    """Alertmanager: resolved once endsAt is set and not in the future."""
    return "resolved" if ends_at is not None and ends_at <= now else "firing"


def misplaced(event: AlertEvent, partitions: int) -> bool:
    """True when the producer keyed the message otherwise (or not at all, or with another partitioner)."""
    return event.position.partition != fingerprint_partition(event.fingerprint, partitions)


def _header(headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return None
