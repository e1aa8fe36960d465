"""The enrich stage's pure decisions, as tables: operator rules before the built-in ones, what filter matchers see,
first filter match wins, and the notify message per mode (CONTRACTS.md)."""

from __future__ import annotations

import orjson
import pytest

from agents.enrich import builtin
from agents.enrich.decide import by_builtin_rules, by_operator_rules, filter_decision, notify_value
from agents.enrich.model import Action, BadEvent, Classification, FilterDecision, Source, StoredEvent
from app import rules

RULES = rules.parse("""
classification:
  - match: ['alertname="Watchdog"']
    severity: noise
  - match: ['team="db"']
    category: database
filters:
  - {name: drop-noise, match: ['severity="noise"'], action: deny}
  - {name: hold-warnings, match: ['severity="warning"'], action: delay, for: 2m}
  - {name: pass-db, match: ['team="db"'], action: allow}
""")


def cls(severity: str, category: str = "x") -> Classification:
    return Classification(category=category, severity=severity, confidence=0.5, reasoning="", source=Source.RULES)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"alertname": "Watchdog"}, ("heartbeat", "noise", 1.0)),  # the rule's severity, the built-in category
        ({"alertname": "HighCPU", "team": "db", "severity": "critical"}, ("database", "critical", 1.0)),
        ({"alertname": "HighCPU", "severity": "warn"}, None),  # no operator rule: the caller goes on
    ],
)
def test_operator_rules_first_match_completed_by_the_built_in_ones(labels, expected) -> None:  # type: ignore[no-untyped-def]
    got = by_operator_rules(RULES.classification, labels, {})
    assert (got and (got.category, got.severity, got.confidence)) == expected
    if got is not None:
        assert got.source is Source.RULES and got.reasoning.startswith("rules file: classification[")


@pytest.mark.parametrize(
    ("labels", "category", "severity"),
    [
        ({"alertname": "Watchdog", "severity": "critical"}, "heartbeat", "noise"),
        ({"alertname": "TargetDown", "severity": "page"}, "availability", "critical"),
        ({"alertname": "ErrorBudget", "severity": "error"}, "errors", "critical"),
        ({"alertname": "DiskFull", "severity": "warning"}, "saturation", "warning"),
        ({"alertname": "Thing", "severity": "low"}, "other", "info"),
        ({"alertname": "Thing"}, "other", "info"),
    ],
)
def test_built_in_rules(labels: dict[str, str], category: str, severity: str) -> None:
    c = by_builtin_rules(labels, {})
    assert (c.category, c.severity, c.confidence, c.source, c.model) == (category, severity, 0.5, Source.RULES, None)
    assert c == Classification.model_validate(c.as_json())  # the stored object reads back the same


@pytest.mark.parametrize(
    ("labels", "severity", "expected"),
    [
        ({"severity": "critical"}, "noise", FilterDecision("drop-noise", Action.DENY)),  # the classification's
        ({"severity": "noise"}, "critical", FilterDecision(None, Action.ALLOW)),  # not the label's
        ({}, "warning", FilterDecision("hold-warnings", Action.DELAY, 120.0)),
        ({"team": "db"}, "warning", FilterDecision("hold-warnings", Action.DELAY, 120.0)),  # first match wins
        ({"team": "db"}, "info", FilterDecision("pass-db", Action.ALLOW)),
        ({"team": "web"}, "info", FilterDecision(None, Action.ALLOW)),  # no match: allow
    ],
)
def test_filters_see_the_labels_with_the_classification_severity(labels, severity, expected) -> None:  # type: ignore[no-untyped-def]
    assert filter_decision(RULES.filters, labels, cls(severity)) == expected


EVENT = {"id": "7", "fingerprint": "0123456789abcdef", "status": "firing", "labels": {"alertname": "A"},
         "classification": None, "filter": None}  # fmt: skip
CLASSIFIED = {**cls("warning").as_json(), "recommendations": ["do this"]}


@pytest.mark.parametrize(
    ("mode", "classification", "recommendations"),
    [
        ("enriched", CLASSIFIED, None),
        ("transparent", None, None),
        ("transparent_with_recommendations", None, ["do this"]),
    ],
)
def test_the_notify_message_per_mode(mode: str, classification, recommendations) -> None:  # type: ignore[no-untyped-def]
    decision = {"rule": "r", "action": "delay"}
    body = orjson.loads(notify_value(EVENT, CLASSIFIED, decision, mode))
    assert body["mode"] == mode and body["filter"] == decision
    assert body["event"] == {**EVENT, "classification": classification, "filter": decision}
    assert body.get("recommendations") == recommendations


def test_an_event_off_the_topic_parses_or_says_why_not() -> None:
    e = StoredEvent.parse(orjson.dumps({**EVENT, "receivedAt": "2026-11-24T10:00:00.123Z", "annotations": {}}))
    assert (e.id, e.received_ms, e.labels) == (7, 1795514400123, {"alertname": "A"})
    for value, reason in ((b"{", "not JSON"), (b"[]", "not a JSON object"), (orjson.dumps(EVENT), "receivedAt: "),
                          (orjson.dumps({**EVENT, "receivedAt": "x"}), "not an event")):  # fmt: skip
        with pytest.raises(BadEvent, match=reason):
            StoredEvent.parse(value)


def test_the_history_agent_still_reads_its_severity_here() -> None:
    from agents import enrich

    assert enrich.severity is builtin.severity
