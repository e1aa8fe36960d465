"""The enrich stage's pure decisions: classification by the operator's rules or the built-in ones, the filter rule
that decides whether an event is published, and the notify message shaped by the enrichment mode.

How filter matchers see an event: its labels, with `severity` replaced by the classification's severity
(critical|warning|info|noise). So `severity="noise"` matches what the classification decided, whatever the label
said; to act on the label as sent, write a classification rule for it (classification rules see the labels only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from agents.enrich import builtin
from agents.enrich.model import Action, Classification, FilterDecision, Source
from app.rules import ClassificationRule, FilterRule
from app.settings import EnrichmentMode

ALLOW = FilterDecision(None, Action.ALLOW)


def by_operator_rules(
    rules: Sequence[ClassificationRule], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> Classification | None:
    """The first classification rule of the rules file that matches the labels, completed by the built-in rules
    for what it leaves out; None when none matches."""
    for i, rule in enumerate(rules):
        if rule.matches(labels):
            base = builtin.verdict(labels, annotations)
            shown = ", ".join(rule.match) or "every alert"
            return Classification(
                category=rule.category or base.category,
                severity=rule.severity or base.severity,
                confidence=1.0,
                reasoning=f"rules file: classification[{i}] ({shown})",
                recommendations=rule.recommendations or base.recommendations,
                source=Source.RULES,
            )
    return None


def by_builtin_rules(labels: Mapping[str, str], annotations: Mapping[str, str]) -> Classification:
    return builtin.classification(labels, annotations)


def matcher_view(labels: Mapping[str, str], classification: Classification) -> dict[str, str]:
    """What filter matchers see: the labels, `severity` being the classification's."""
    return {**labels, "severity": classification.severity}


def filter_decision(
    filters: Sequence[FilterRule], labels: Mapping[str, str], classification: Classification
) -> FilterDecision:
    """The first filter rule that matches decides; none matching allows."""
    if not filters:
        return ALLOW
    seen = matcher_view(labels, classification)
    for rule in filters:
        if rule.matches(seen):
            return FilterDecision(rule.name, rule.action, rule.for_s or 0.0)
    return ALLOW


def notify_value(
    event: Mapping[str, Any], classification: Mapping[str, Any] | None, decision: Mapping[str, Any], mode: str
) -> bytes:
    """The `<TOPIC>-notify` message (CONTRACTS.md): the event shaped by the mode, the filter that let it through,
    and in `transparent_with_recommendations` the recommendations beside the unclassified event."""
    enriched = mode == EnrichmentMode.ENRICHED
    body: dict[str, Any] = {
        "event": {**event, "classification": classification if enriched else None, "filter": dict(decision)},
        "mode": mode,
        "filter": {"rule": decision.get("rule"), "action": decision.get("action")},
    }
    if mode == EnrichmentMode.TRANSPARENT_WITH_RECOMMENDATIONS:
        body["recommendations"] = list((classification or {}).get("recommendations") or [])
    return orjson.dumps(body)
