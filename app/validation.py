"""The one validation of an alert, from the bytes of its topic message: the worker's decoder (agents/ingest.py)
and the webhook bridge (web/views.py) both use it, so whatever the bridge accepts the worker stores. Errors name
the field, in the form every 4xx and dead-letter reason uses."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from app.fingerprint import fingerprint
from app.models import PATTERN_ERRORS, AlertIn, utc

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
