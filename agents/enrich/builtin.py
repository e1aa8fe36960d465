"""The built-in rules: a severity from the `severity`/`priority` label's aliases and a category from ordered regexes
over the alert's name and texts (first match wins). Pure.

The history agent stores `severity(event)` on every row; the enrich agent falls back on `verdict(...)` when no
operator rule matched and no LLM answered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from agents.enrich.model import Classification, Severity, Source, Verdict
from app.records import AlertEvent

BUILTIN_CONFIDENCE = 0.5  # a regex's guess: operator rules say 1.0, an LLM says its own

_SEVERITY_ALIASES = {
    "critical": "critical", "crit": "critical", "page": "critical", "emergency": "critical",
    "fatal": "critical", "p1": "critical", "high": "critical",
    "error": "error", "err": "error", "major": "error", "p2": "error",
    "warning": "warning", "warn": "warning", "minor": "warning", "medium": "warning", "p3": "warning",
    "info": "info", "informational": "info", "notice": "info", "low": "info", "p4": "info", "p5": "info",
    "none": "none", "debug": "none",
}  # fmt: skip

# (classification, pattern over the lowercased "alertname summary description") — SRE's golden signals first.
# Lowercased once and matched case-sensitively: re.IGNORECASE ran these alternations several times slower.
_CLASSIFICATION_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("heartbeat", r"watchdog|deadmansswitch|heartbeat"),
        ("availability", r"down\b|unreachable|\bup\b|absent|unavailable|crashloop|notready|"
                         r"offline|targetdown|failed|failing|oomkill|restart"),
        ("saturation", r"cpu|memory|\bmem|disk|filesystem|inode|full|quota|saturat|throttl|capacity|"
                       r"fdexhaust|file ?descriptors"),
        ("latency", r"latency|slow|duration|response ?time|timeout|lag\b|lagging"),
        ("errors", r"error|5xx|exception|errorrate|failure rate"),
        ("certificate", r"cert|tls|ssl|expir"),
        ("security", r"auth|unauthori[sz]ed|forbidden|intrusion|vulnerab"),
    )
)  # fmt: skip


# The label's severity as the classification's scale (the same mapping migration 008 used for older rows).
_CLASSIFIED_SEVERITY: dict[str, Severity] = {"critical": "critical", "error": "critical", "warning": "warning"}

# What an on-call engineer does first, per category: what `transparent_with_recommendations` carries without an LLM.
_RECOMMENDATIONS: dict[str, tuple[str, ...]] = {
    "heartbeat": ("A heartbeat firing is expected; alert on its absence instead.",),
    "availability": ("Check whether the target is up and reachable from the scraper.",
                     "Look at recent deploys, restarts and OOM kills of the service."),
    "saturation": ("Find what is consuming the resource (top consumers over the last hour).",
                   "Free or add capacity before it runs out; check the growth trend."),
    "latency": ("Compare latency with traffic and saturation of the service and its dependencies.",),
    "errors": ("Read the service's recent error logs; correlate with deploys and dependency failures.",),
    "certificate": ("Check the certificate's expiry date and renew it; verify the automation that should have.",),
    "security": ("Review the access logs for the source of the failures; rotate credentials if in doubt.",),
}  # fmt: skip


def severity(event: AlertEvent) -> str:
    return label_severity(event.labels)


def label_severity(labels: Mapping[str, str]) -> str:
    raw = labels.get("severity") or labels.get("priority") or ""
    return _SEVERITY_ALIASES.get(raw.strip().lower(), "unknown" if raw else "none")


def classify(event: AlertEvent) -> str:
    return category(event.labels, event.annotations)


def category(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    return _classify(labels.get("alertname", ""), annotations.get("summary", ""), annotations.get("description", ""))


def verdict(labels: Mapping[str, str], annotations: Mapping[str, str]) -> Verdict:
    """The built-in rules' classification: the category's regex, the label's severity (a heartbeat is noise)."""
    return _verdict(*_decided(labels, annotations))


def _decided(labels: Mapping[str, str], annotations: Mapping[str, str]) -> tuple[str, Severity, str]:
    """Category, severity and the severity label as sent: what a built-in verdict is made of."""
    cat = category(labels, annotations)
    raw = label_severity(labels)
    sev: Severity = "noise" if cat == "heartbeat" else _CLASSIFIED_SEVERITY.get(raw, "info")
    return cat, sev, raw


def classification(labels: Mapping[str, str], annotations: Mapping[str, str]) -> Classification:
    """`verdict` as the classification stored on the row (source rules, no model): one frozen object per verdict,
    not a validated model built per event."""
    return _classification(*_decided(labels, annotations))


@lru_cache(maxsize=4096)
def _classification(cat: str, sev: Severity, raw: str) -> Classification:
    return Classification.of(_verdict(cat, sev, raw), Source.RULES, None)


@lru_cache(maxsize=4096)  # a handful of (category, severity) pairs: one frozen object each
def _verdict(cat: str, sev: Severity, raw: str) -> Verdict:
    return Verdict(
        category=cat,
        severity=sev,
        confidence=BUILTIN_CONFIDENCE,
        reasoning=f"built-in rules: category {cat} from the alert's name and texts, severity from label {raw!r}",
        recommendations=list(_RECOMMENDATIONS.get(cat, ())),
    )


@lru_cache(maxsize=65536)  # the same few thousand alertname/summary texts recur all day
def _classify(alertname: str, summary: str, description: str) -> str:
    text = f"{alertname} {summary} {description}".lower()
    for name, pattern in _CLASSIFICATION_RULES:
        if pattern.search(text):
            return name
    return "other"
