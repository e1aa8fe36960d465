"""Outbound targets of the publish agent, one module each (Alertmanager's `notify/<name>/` shape): its config
check and its body; the send, retries, circuit breaker and redaction are shared (base.py, app.retry,
app.breaker, app.redact)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.errors import ConfigError
from app.matchers import Matcher
from sinks.publishers import pagerduty, slack, webhook
from sinks.publishers.base import Spec, Target

KINDS: dict[str, type[slack.Slack] | type[pagerduty.PagerDuty] | type[webhook.Webhook]] = {
    "slack": slack.Slack, "pagerduty": pagerduty.PagerDuty, "webhook": webhook.Webhook,
}  # fmt: skip


def build(spec: Spec, matchers: Sequence[Matcher], env: Mapping[str, str], public_url: str | None) -> Target:
    """The target a rules-file entry describes, its secrets read from `env`; ConfigError naming what is wrong."""
    kind = KINDS.get(spec.type)
    if kind is None:
        raise ConfigError(f"target {spec.name!r}: type {spec.type!r} is not one of {', '.join(KINDS)}")
    return kind.from_spec(spec, matchers, env, public_url)
