"""Generic webhook: an Alertmanager webhook v4 body, so whatever takes Alertmanager's webhook takes ours.

Each delivery is one alert, as Alertmanager sends it for a route with `group_by: ['...']` (every label): its
labels are the group's labels and the common labels, and the group key is built from them the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from app.events import rfc3339
from app.matchers import Matcher
from app.rules import Delivery
from sinks.publishers.base import Request, Spec, target_url
from sinks.publishers.message import NotifyMessage

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: Alertmanager's endsAt of a firing alert with no end


@dataclass(frozen=True)
class Webhook:
    kind: ClassVar[str] = "webhook"
    name: str
    url: str
    delivery: Delivery
    matchers: Sequence[Matcher]
    public_url: str | None

    @classmethod
    def from_spec(
        cls, spec: Spec, matchers: Sequence[Matcher], env: Mapping[str, str], public_url: str | None
    ) -> Webhook:
        return cls(spec.name, target_url(spec, env), spec.delivery, tuple(matchers), public_url)

    def request(self, message: NotifyMessage) -> Request:
        return Request(self.url, body(message, self.name, self.public_url))


def group_key(labels: Mapping[str, str]) -> str:
    """Alertmanager's group key for the root route grouped by every label: `{}:{a="1", b="2"}`."""
    return "{}:{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


def body(message: NotifyMessage, receiver: str, external_url: str | None) -> dict[str, Any]:
    e = message.event
    alert = {
        "status": e.status, "labels": e.labels, "annotations": e.annotations, "startsAt": rfc3339(e.startsAt),
        "endsAt": rfc3339(e.endsAt) if e.endsAt is not None else ZERO_TIME, "generatorURL": e.generatorURL or "",
        "fingerprint": e.fingerprint,
    }  # fmt: skip
    return {
        "version": "4", "groupKey": group_key(e.labels), "truncatedAlerts": 0, "status": e.status,
        "receiver": receiver, "groupLabels": e.labels, "commonLabels": e.labels, "commonAnnotations": e.annotations,
        "externalURL": external_url or "", "alerts": [alert],
    }  # fmt: skip
