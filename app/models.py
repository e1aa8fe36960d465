"""Wire shapes: the topic message (any producer), Alertmanager's webhook v4 and postable alerts.

The topic message is exactly one element of a webhook `alerts[]` array; `fingerprint` and
`status` may be omitted and are then derived the way Alertmanager derives them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

# Alertmanager's "no end" is Go's zero time.
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)

# Checked by pydantic's own (Rust) pattern matching: a Python validator per field slowed decoding markedly.
LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text and jsonb cannot hold U+0000: refused here, not by a whole batch later
FINGERPRINT = r"^[0-9a-f]{16}$"
# What a failed pattern means, for the error a sender reads (pydantic's own message quotes the regex).
PATTERN_ERRORS = {
    LABEL_NAME: "invalid label name {input!r}",
    NO_NUL: "contains a NUL character",
    FINGERPRINT: "must be 16 lowercase hex digits",
}

Status = Literal["firing", "resolved"]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_NAME)]
LabelValue = Annotated[str, StringConstraints(max_length=8192, pattern=NO_NUL)]
Fingerprint = Annotated[str, StringConstraints(pattern=FINGERPRINT)]


def _time_text(value: object) -> object:
    # pydantic would read a number as Unix time; Alertmanager only ever sends RFC 3339 text.
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 time string")
    return value


Time = Annotated[datetime | None, BeforeValidator(_time_text)]


def utc(value: datetime | None) -> datetime | None:
    """A time as the pipeline keeps it: UTC, and None for Go's zero time (Alertmanager's "not set")."""
    if value is None:
        return None
    if value.tzinfo is None:  # RFC 3339 always carries an offset; be lenient and read it as UTC
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return None if value <= ZERO_TIME else value


class AlertIn(BaseModel):
    """One alert as producers put it on the topic (and as it appears in webhook `alerts[]`)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    labels: dict[LabelName, LabelValue] = Field(min_length=1, max_length=256)
    annotations: dict[str, LabelValue] = Field(default_factory=dict, max_length=256)
    startsAt: Time = None  # as sent: `utc()` makes it the pipeline's (ingest.to_event)
    endsAt: Time = None
    generatorURL: str = Field("", max_length=8192)
    fingerprint: Fingerprint | None = None
    status: Status | None = None
    source: str | None = Field(None, max_length=256)
    receiver: str | None = Field(None, max_length=256)


class WebhookIn(BaseModel):
    """Alertmanager webhook payload, version 4."""

    model_config = ConfigDict(extra="ignore")

    version: str | None = None
    groupKey: str | None = None
    truncatedAlerts: int = 0
    status: Status | None = None
    receiver: str | None = None
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = None
    alerts: list[AlertIn] = Field(min_length=1, max_length=10000)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and value != "4":
            raise ValueError(f"unsupported webhook version {value!r}; alert-history reads version 4")
        return value


class PostableAlerts(BaseModel):
    """Alertmanager v2 `POST /api/v2/alerts` body: a list of alerts (what Prometheus sends)."""

    alerts: list[AlertIn] = Field(min_length=0, max_length=10000)
