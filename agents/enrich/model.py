"""The enrich stage's typed records: the classification object (DESIGN.md), the event it reads off the events topic,
and the filter decision. The LLM's tool schema is `Verdict`'s JSON schema: the classification less what we fill in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from app.errors import AlertHistoryError
from app.rules import Action, Severity

# Bounds of what an answer may hold: the object is stored on every row, cached and shown in /history.
MAX_CATEGORY = 64
MAX_REASONING = 2000
MAX_RECOMMENDATIONS = 10
MAX_RECOMMENDATION = 500


class Source(StrEnum):
    RULES = "rules"
    LLM = "llm"
    CACHE = "cache"


class Verdict(BaseModel):
    """What the classifier decides about an alert (the `classify_alert` tool's arguments)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str = Field(
        min_length=1, max_length=MAX_CATEGORY,
        description="short lowercase class, e.g. availability, saturation, latency, errors, certificate, security",
    )  # fmt: skip
    severity: Severity = Field(description="critical: act now; warning: act soon; info: no action; noise: drop it")
    confidence: float = Field(ge=0, le=1, description="0 to 1")
    reasoning: str = Field(max_length=MAX_REASONING, description="one or two sentences: why this class and severity")
    recommendations: list[str] = Field(
        default_factory=list, max_length=MAX_RECOMMENDATIONS,
        description="concrete next steps for the on-call engineer, most useful first",
    )  # fmt: skip

    def recommended(self) -> list[str]:
        return [r[:MAX_RECOMMENDATION] for r in self.recommendations]


class Classification(Verdict):
    """The classification object stored on the row: {category, severity, confidence, reasoning, recommendations[],
    source (rules|llm|cache), model}."""

    source: Source
    model: str | None = None

    @classmethod
    def of(cls, verdict: Verdict, source: Source, model: str | None) -> Classification:
        return cls(**verdict.model_dump(), source=source, model=model)

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def tool_schema() -> dict[str, Any]:
    """The JSON schema of the `classify_alert` tool's parameters."""
    schema = Verdict.model_json_schema()
    schema.pop("title", None)
    return schema


@dataclass(frozen=True, slots=True)
class FilterDecision:
    """Which filter rule decided (None: none matched, so allow), what it decided, and for how long a delay holds."""

    rule: str | None
    action: Action
    for_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "action": self.action.value}


class BadEvent(AlertHistoryError):
    """A message of the events topic that is not an event as /history returns it."""


@dataclass(slots=True)
class StoredEvent:
    """An event off the events topic: the row it names (id, received_at) and what classifying and filtering read.
    `body` is the event as the topic carried it, forwarded on the notify topic."""

    id: int
    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    received_ms: int
    body: dict[str, Any]

    @classmethod
    def parse(cls, value: bytes | None) -> StoredEvent:
        try:
            body = orjson.loads(value or b"")
        except orjson.JSONDecodeError as exc:
            raise BadEvent(f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadEvent("not a JSON object")
        try:
            received = datetime.fromisoformat(body["receivedAt"]).astimezone(UTC)
            event = cls(
                id=int(body["id"]), fingerprint=str(body["fingerprint"]), status=str(body["status"]),
                labels=_strings(body["labels"], "labels"), annotations=_strings(body.get("annotations") or {},
                                                                                "annotations"),
                received_ms=int(received.timestamp() * 1000 + 0.5), body=body,
            )  # fmt: skip
        except KeyError as exc:
            raise BadEvent(f"{exc.args[0]}: missing") from None
        except (TypeError, ValueError) as exc:
            raise BadEvent(f"not an event: {exc}") from None
        if event.status not in ("firing", "resolved"):
            raise BadEvent(f"status: must be firing or resolved, got {event.status!r}")
        return event


def _strings(value: object, field: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{field}: must be an object of strings")
    for k, v in value.items():  # a loop: all() over a generator cost twice as much per event
        if not (isinstance(k, str) and isinstance(v, str)):
            raise ValueError(f"{field}: must be an object of strings")
    return value
