"""PagerDuty Events API v2: `trigger` for a firing event, `resolve` for a resolved one, `dedup_key` = the
fingerprint, so PagerDuty keeps one alert per fingerprint. The routing key is the secret (`routing_key_env`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from app.errors import ConfigError
from app.events import rfc3339
from app.matchers import Matcher
from app.rules import Delivery
from sinks.publishers.base import Request, Spec, clip, secret_from_env, target_url, timeline_url
from sinks.publishers.message import NotifyMessage

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"  # the target's `url` when the rules file gives none
SUMMARY_CHARS = 1024
# PagerDuty's severities; ours (labels, or the classification's critical|warning|info|noise) map onto them.
SEVERITY = {"critical": "critical", "error": "error", "warning": "warning"}


@dataclass(frozen=True)
class PagerDuty:
    kind: ClassVar[str] = "pagerduty"
    name: str
    url: str
    routing_key: str
    delivery: Delivery
    matchers: Sequence[Matcher]
    public_url: str | None

    @classmethod
    def from_spec(
        cls, spec: Spec, matchers: Sequence[Matcher], env: Mapping[str, str], public_url: str | None
    ) -> PagerDuty:
        if not spec.routing_key_env:
            raise ConfigError(f"target {spec.name!r} (pagerduty): set routing_key_env")
        key = secret_from_env(env, spec.name, "routing_key_env", spec.routing_key_env)
        return cls(spec.name, target_url(spec, env, EVENTS_URL), key, spec.delivery, tuple(matchers), public_url)

    def request(self, message: NotifyMessage) -> Request:
        return Request(self.url, body(message, self.routing_key, self.public_url))


def severity(name: str) -> str:
    return SEVERITY.get(name.lower(), "info")


def body(message: NotifyMessage, routing_key: str, public_url: str | None) -> dict[str, Any]:
    e = message.event
    if e.status == "resolved":  # the dedup_key names what to resolve; PagerDuty needs no payload for it
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": e.fingerprint}
    timeline = timeline_url(public_url, e.fingerprint)
    links = [{"href": href, "text": text} for href, text in ((timeline, "Timeline (alert-history)"),
                                                              (e.generatorURL, "Source")) if href]  # fmt: skip
    details: dict[str, Any] = {
        "labels": e.labels, "annotations": e.annotations, "fingerprint": e.fingerprint, "event_id": e.id,
        "startsAt": rfc3339(e.startsAt), "flapping": e.flapping,
    }  # fmt: skip
    if e.classification is not None:
        details["classification"] = e.classification
    if message.advice:
        details["recommendations"] = message.advice
    payload: dict[str, Any] = {
        "summary": clip(f"[FIRING] {e.alertname or e.fingerprint}" + (f": {e.summary}" if e.summary else ""),
                        SUMMARY_CHARS),
        "source": e.labels.get("instance") or e.labels.get("job") or "alert-history",
        "severity": severity(e.effective_severity),
        "timestamp": rfc3339(e.startsAt),
        "custom_details": details,
    }  # fmt: skip
    if e.labels.get("job"):
        payload["component"] = e.labels["job"]
    if e.classification and e.classification.get("category"):
        payload["class"] = str(e.classification["category"])
    out: dict[str, Any] = {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": e.fingerprint, "payload": payload,
        "client": "alert-history", "links": links,
    }  # fmt: skip
    if timeline:
        out["client_url"] = timeline
    return out
