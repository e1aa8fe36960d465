"""Stage 1 — ingest: decode and validate one topic message, and check it sits where its fingerprint belongs.

Pure functions; the pipeline agent calls them and moves the data.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from aiokafka.partitioner import murmur2
from pydantic import ValidationError

from app.fingerprint import fingerprint
from app.models import PATTERN_ERRORS, AlertIn, utc
from app.records import EPOCH, MILLISECOND, AlertEvent, Position

# Header a re-keyed copy carries, so a copy produced twice (crash before commit) counts once.
ORIGIN_HEADER = "alert-history-origin"
# Headers of a dead letter: why it went there, and topic/partition/offset it came from.
DLQ_REASON_HEADER = "alert-history-error"
SOURCE_HEADER = "alert-history-source"
# Digests of valid messages the bridge remembers (`checked`), ~150 bytes each.
CHECKED_MESSAGES = 1 << 17
_checked: OrderedDict[bytes, str] = OrderedDict()


class Rejected(Exception):
    """A message that is not an alert per the topic contract; `reason` names the field."""

    def __init__(self, message: str, field: str = "") -> None:
        self.field = field  # dotted path inside the alert; "" for the message as a whole
        self.message = message
        self.reason = f"{field}: {message}" if field else message
        super().__init__(self.reason)

    def within(self, where: str) -> str:
        """The reason for the alert found at `where` of a request body, e.g. 'alerts.3.labels: ...'."""
        return f"{where}.{self.field}: {self.message}" if self.field else f"{where}: {self.message}"


def _short(text: object, limit: int = 64) -> str:
    """An input named in an error: long ones cut, so a 9,000-character name does not make a 9 KB reason."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _quote(text: str, limit: int = 64) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


def validation_problem(exc: ValidationError) -> tuple[str, str]:
    """First problem of a pydantic error as (dotted field path, message)."""
    err = exc.errors()[0]
    path = [_short(p) for p in err["loc"]]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "json_invalid":
        error = str(err.get("ctx", {}).get("error", msg))
        if "recursion limit" in error:
            return "", f"nested too deeply to read ({error})"
        return "", f"not valid JSON: {error}"
    if path and path[-1] == "[key]":  # a bad name: the mapping it is in, and the name
        name, path = err["input"], path[:-2]
        kind = "annotation" if path and path[-1].endswith(("annotations", "Annotations")) else "label"
        pattern = err.get("ctx", {}).get("pattern")
        if pattern in PATTERN_ERRORS:
            msg = PATTERN_ERRORS[pattern].format(kind=kind, input=_quote(name))
        else:
            msg = f"{kind} name {_quote(name)}: {msg}"
    elif err["type"] == "string_pattern_mismatch":
        msg = PATTERN_ERRORS.get(err["ctx"]["pattern"], msg).format(kind="label", input=_quote(err["input"]))
    return ".".join(path), msg


def describe_validation_error(exc: ValidationError) -> str:
    """First problem of a pydantic error as 'field.path: message', the form every 4xx/DLQ reason uses."""
    field, msg = validation_problem(exc)
    return f"{field or 'body'}: {msg}"


@dataclass(slots=True)
class ValidAlert:
    """An alert that passed every check: what the bridge forwards, and what the pipeline can store."""

    alert: AlertIn
    fingerprint: str  # its labels' own (a given one was checked against them)
    starts_at: datetime | None  # UTC; None: not set
    ends_at: datetime | None


def parse(value: bytes) -> ValidAlert:
    """The one validation of an alert, from its topic message's bytes: the worker decodes with it, and the
    bridge checks each alert it forwards with it, so that whatever the bridge accepts the worker stores."""
    if not value:
        raise Rejected("empty message: expected one JSON alert object")
    try:
        alert = AlertIn.model_validate_json(value)
    except ValidationError as exc:
        field, msg = validation_problem(exc)
        raise Rejected(msg, field) from None
    fp = fingerprint(alert.labels)
    if alert.fingerprint is not None and alert.fingerprint != fp:  # else it writes into another alert's history
        message = f"{alert.fingerprint} is not the fingerprint of these labels (Alertmanager's is {fp})"
        raise Rejected(message, "fingerprint")
    try:
        return ValidAlert(alert, fp, utc(alert.startsAt), utc(alert.endsAt))
    except OverflowError:
        raise _out_of_range(alert) from None


def checked(value: bytes) -> str:
    """`parse(value)`'s fingerprint, or its Rejected, for the bridge: most of its stream is alerts it checked
    before byte for byte (Alertmanager's HA pairs and repeat_interval resends), and parse depends on the bytes
    alone, so a valid message's digest is remembered (a bounded number of them, oldest out first)."""
    digest = hashlib.blake2b(value, digest_size=16).digest()
    fp = _checked.get(digest)
    if fp is None:
        fp = parse(value).fingerprint
        if len(_checked) >= CHECKED_MESSAGES:
            _checked.popitem(last=False)
        _checked[digest] = fp
    return fp


def _out_of_range(alert: AlertIn) -> Rejected:
    for field, value in (("startsAt", alert.startsAt), ("endsAt", alert.endsAt)):
        try:
            utc(value)
        except OverflowError:
            assert value is not None
            return Rejected(f"{value.isoformat()} is outside the times that can be stored (years 1-9999 UTC)", field)
    raise AssertionError("no time out of range")


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
