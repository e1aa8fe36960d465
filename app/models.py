"""Wire shapes: the topic message (any producer), Alertmanager's webhook v4 and postable alerts.

The topic message is exactly one element of a webhook `alerts[]` array; `fingerprint` and
`status` may be omitted and are then derived the way Alertmanager derives them. An alert is validated
in one place, from the bytes of its topic message (`app.validation.parse`): the bridge checks each alert
it will forward with it, so whatever the bridge accepts the worker stores.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

# Alertmanager's "no end" is Go's zero time.
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)

# Checked by pydantic's own (Rust) pattern matching: a Python validator per field slowed decoding markedly.
LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text and jsonb cannot hold U+0000: refused here, not by a whole batch later
FINGERPRINT = r"^[0-9a-f]{16}$"
# What a failed pattern means, for the error a sender reads (pydantic's own message quotes the regex).
PATTERN_ERRORS = {
    LABEL_NAME: "invalid {kind} name {input} (must match " + LABEL_NAME + ")",
    NO_NUL: "contains a NUL character",
    FINGERPRINT: "must be 16 lowercase hex digits",
}
MAX_NAME = 1024  # characters of a label or annotation name
MAX_VALUE = 8192  # characters of a label or annotation value, and of generatorURL
MAX_PAIRS = 256  # labels (or annotations) of one alert or one webhook's common/group sets

Status = Literal["firing", "resolved"]
# Annotation names follow the label-name rule, as Alertmanager validates both.
LabelName = Annotated[str, StringConstraints(max_length=MAX_NAME, pattern=LABEL_NAME)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_VALUE, pattern=NO_NUL)]
Fingerprint = Annotated[str, StringConstraints(pattern=FINGERPRINT)]
Name = Annotated[str, StringConstraints(max_length=256, pattern=NO_NUL)]  # receiver, source
LabelSet = Annotated[dict[LabelName, LabelValue], Field(max_length=MAX_PAIRS)]


def _time_text(value: object) -> object:
    # pydantic would read a number as Unix time; Alertmanager only ever sends RFC 3339 text.
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 time string")
    return value


Time = Annotated[datetime | None, BeforeValidator(_time_text)]


def utc(value: datetime | None) -> datetime | None:
    """A time as the pipeline keeps it: UTC, and None for Go's zero time (Alertmanager's "not set").

    Raises OverflowError for a time whose UTC instant is outside years 1-9999 (e.g. year 1 at +01:00)."""
    if value is None:
        return None
    if value.tzinfo is None:  # RFC 3339 always carries an offset; be lenient and read it as UTC
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return None if value == ZERO_TIME else value


class AlertIn(BaseModel):
    """One alert as producers put it on the topic (and as it appears in webhook `alerts[]`)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    labels: dict[LabelName, LabelValue] = Field(min_length=1, max_length=MAX_PAIRS)
    annotations: LabelSet = Field(default_factory=dict)
    startsAt: Time = None  # as sent: `utc()` makes it the pipeline's (validation.parse)
    endsAt: Time = None
    generatorURL: str = Field("", max_length=MAX_VALUE, pattern=NO_NUL)
    fingerprint: Fingerprint | None = None  # must be the labels' own (validation.parse)
    status: Status | None = None
    source: Name | None = None
    receiver: Name | None = None


# The alerts of a request, as sent: each is validated from the bytes the bridge forwards (web.views.topic_messages).
RawAlerts = list[Any]


class WebhookIn(BaseModel):
    """Alertmanager webhook payload, version 4."""

    model_config = ConfigDict(extra="ignore")

    version: str | None = None
    groupKey: str | None = None
    truncatedAlerts: int = Field(0, strict=True)  # a number, as documented: not true, "3" or 3.0
    status: Status | None = None
    receiver: Name | None = None  # copied into each alert that has none: the alert's limits
    groupLabels: LabelSet = Field(default_factory=dict)
    commonLabels: LabelSet = Field(default_factory=dict)
    commonAnnotations: LabelSet = Field(default_factory=dict)
    externalURL: str | None = None
    alerts: RawAlerts = Field(min_length=1, max_length=10000)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and value != "4":
            raise ValueError(f"unsupported webhook version {value!r}; alert-history reads version 4")
        return value


class PostableAlerts(BaseModel):
    """Alertmanager v2 `POST /api/v2/alerts` body: a list of alerts (what Prometheus sends)."""

    alerts: RawAlerts = Field(min_length=0, max_length=10000)
