"""The notify message (`<TOPIC>-notify`, CONTRACTS.md) as the publish agent reads it: the event as `/history`
returns it, shaped by the enrichment mode, with the filter's decision and any recommendations."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import InvalidAlert

EVENT_ID_MAX = 2**63 - 1


class NotifyEvent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(pattern=r"^[0-9]{1,19}$")
    fingerprint: str = Field(min_length=1, max_length=256)
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = {}
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str | None = None
    severity: str | None = None
    flapping: bool = False
    classification: dict[str, Any] | None = None

    @property
    def event_id(self) -> int:
        return int(self.id)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or self.annotations.get("description") or ""

    @property
    def effective_severity(self) -> str:
        """The classification's severity when the event carries one, else the severity label (or none)."""
        if self.classification and isinstance(self.classification.get("severity"), str):
            return str(self.classification["severity"])
        return self.labels.get("severity") or self.severity or "none"

    def match_labels(self) -> dict[str, str]:
        """What target matchers see: the labels, with the classification's severity when there is one."""
        if self.classification and isinstance(self.classification.get("severity"), str):
            return {**self.labels, "severity": str(self.classification["severity"])}
        return self.labels


class FilterDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str | None = None
    action: Literal["allow", "delay"] = "allow"


class NotifyMessage(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    event: NotifyEvent
    mode: Literal["transparent", "enriched", "transparent_with_recommendations"] = "transparent"
    filter: FilterDecision | None = None
    recommendations: list[str] = []

    @property
    def advice(self) -> list[str]:
        """Recommendations to show: the message's own, else the classification's (enriched mode)."""
        if self.recommendations:
            return self.recommendations
        rec = (self.event.classification or {}).get("recommendations")
        return [str(r) for r in rec] if isinstance(rec, list) else []


def parse(value: bytes) -> NotifyMessage:
    """A notify message, or InvalidAlert naming the field at fault."""
    try:
        message = NotifyMessage.model_validate(orjson.loads(value))
    except orjson.JSONDecodeError as exc:
        raise InvalidAlert(f"not JSON: {exc}") from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise InvalidAlert(f"{field}: {err['msg']}", field) from None
    if message.event.event_id > EVENT_ID_MAX:
        raise InvalidAlert("event.id: larger than a 63-bit event id", "event.id")
    return message
