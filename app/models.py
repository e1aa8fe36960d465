"""Wire shapes: the topic message (any producer), Alertmanager's webhook v4 and postable alerts.

The topic message is exactly one element of a webhook `alerts[]` array; `fingerprint` and
`status` may be omitted and are then derived the way Alertmanager derives them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Alertmanager's "no end" is Go's zero time.
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")

Status = Literal["firing", "resolved"]
LabelValue = Annotated[str, Field(max_length=8192)]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # RFC 3339 always carries an offset; be lenient and read it as UTC
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return None if value <= ZERO_TIME else value


class AlertIn(BaseModel):
    """One alert as producers put it on the topic (and as it appears in webhook `alerts[]`)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    labels: dict[str, LabelValue] = Field(min_length=1, max_length=256)
    annotations: dict[str, LabelValue] = Field(default_factory=dict, max_length=256)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str = Field("", max_length=8192)
    fingerprint: str | None = None
    status: Status | None = None
    source: str | None = Field(None, max_length=256)
    receiver: str | None = Field(None, max_length=256)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            if not _LABEL_NAME.match(name):
                raise ValueError(f"invalid label name {name!r}")
        return labels

    @field_validator("labels", "annotations", mode="after")
    @classmethod
    def _no_nul(cls, values: dict[str, str]) -> dict[str, str]:
        # PostgreSQL text and jsonb cannot hold U+0000: refuse it here rather than fail a whole batch later.
        for name, value in values.items():
            if "\x00" in value:
                raise ValueError(f"{name}: contains a NUL character")
        return values

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint_form(cls, value: str | None) -> str | None:
        if value is not None and not _FINGERPRINT.match(value):
            raise ValueError("must be 16 lowercase hex digits")
        return value

    @field_validator("startsAt", "endsAt", mode="before")
    @classmethod
    def _times_are_text(cls, value: object) -> object:
        # pydantic would read a number as Unix time; Alertmanager only ever sends RFC 3339 text.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an RFC 3339 time string")
        return value

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _times(cls, value: datetime | None) -> datetime | None:
        return _utc(value)


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
