"""Slack incoming webhook: one Block Kit message per event (status, alertname, summary, severity, labels,
recommendations, links to the alert's timeline and its source). The URL is the secret (`url_env`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from app.events import rfc3339
from app.matchers import Matcher
from app.rules import Delivery
from sinks.publishers.base import Request, Spec, clip, target_url, timeline_url
from sinks.publishers.message import NotifyMessage

# Block Kit's limits: header text 150 characters, section text 3000, a field 2000, a button's URL 3000.
HEADER_CHARS, TEXT_CHARS, FIELD_CHARS, URL_CHARS = 150, 3000, 2000, 3000


@dataclass(frozen=True)
class Slack:
    kind: ClassVar[str] = "slack"
    name: str
    url: str
    delivery: Delivery
    matchers: Sequence[Matcher]
    public_url: str | None

    @classmethod
    def from_spec(
        cls, spec: Spec, matchers: Sequence[Matcher], env: Mapping[str, str], public_url: str | None
    ) -> Slack:
        return cls(spec.name, target_url(spec, env), spec.delivery, tuple(matchers), public_url)

    def request(self, message: NotifyMessage) -> Request:
        return Request(self.url, body(message, self.public_url))


def escape(text: str) -> str:
    """Slack's mrkdwn control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int = TEXT_CHARS) -> dict[str, str]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def body(message: NotifyMessage, public_url: str | None) -> dict[str, Any]:
    e = message.event
    status = "FIRING" if e.status == "firing" else "RESOLVED"
    name = e.alertname or e.fingerprint
    fields = [
        _mrkdwn(f"*Status*\n{e.status}", FIELD_CHARS),
        _mrkdwn(f"*Severity*\n{escape(e.effective_severity)}", FIELD_CHARS),
        _mrkdwn(f"*Started*\n{rfc3339(e.startsAt)}", FIELD_CHARS),
    ]
    if e.status == "resolved" and e.endsAt is not None:
        fields.append(_mrkdwn(f"*Ended*\n{rfc3339(e.endsAt)}", FIELD_CHARS))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(f"{status}: {name}", HEADER_CHARS)}},
    ]
    if e.summary:
        blocks.append({"type": "section", "text": _mrkdwn(escape(e.summary))})
    blocks.append({"type": "section", "fields": fields})
    labels = " ".join(f"`{escape(k)}={escape(v)}`" for k, v in sorted(e.labels.items()))
    blocks.append({"type": "section", "text": _mrkdwn(f"*Labels*\n{labels}")})
    if message.advice:
        advice = "\n".join(f"• {escape(r)}" for r in message.advice)
        blocks.append({"type": "section", "text": _mrkdwn(f"*Recommendations*\n{advice}")})
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": text}, "url": url}
        for text, url in (("Timeline", timeline_url(public_url, e.fingerprint)), ("Source", e.generatorURL))
        if url and len(url) <= URL_CHARS
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    # `text` is what notifications and clients without blocks show.
    return {"text": clip(f"[{status}] {name}" + (f": {e.summary}" if e.summary else ""), TEXT_CHARS), "blocks": blocks}
