"""The pipeline, in order. Each stage is a Faust agent; stages hand each other typed records, and the
history path never waits on anything downstream of PostgreSQL.

  topic `alerts` (any producer, the webhook bridge)
    └─► history agent (agents/history): holes → ingest → dedup → state → enrich → sink (PostgreSQL, exactly
        once in effect) → table state → ack; dead letters to `alerts-dlq`
  topic `alerts-events` (one message per new stored row)
    └─► enrich agent (agents/enrich): classify (rules file, cache, LLM, built-in rules) → filter rules → the row's
        classification and filter → `alerts-notify`, shaped by the enrichment mode; delayed firings held in PostgreSQL
  topic `alerts-notify` (what the filter rules let through)
    └─► publish agent (agents/publish): each matching target once, in order per fingerprint; `alerts-notify-dlq`
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.enrich import agent as enrich_agent
from agents.history import agent as history_agent
from agents.publish import agent as publish_agent
from app.settings import Settings
from sinks.base import Sink

if TYPE_CHECKING:  # app.faust_app wires the pipeline
    from app.faust_app import AlertHistoryApp


@dataclass(frozen=True)
class Pipeline:
    """The agents this worker runs (ALERT_HISTORY_AGENTS); None where another worker runs that stage."""

    history: history_agent.HistoryAgent | None
    enrich: enrich_agent.EnrichAgent | None  # also None without the events topic (EVENTS_ENABLED=false)
    publish: publish_agent.Publisher | None


def wire(app: AlertHistoryApp, settings: Settings, sink: Sink) -> Pipeline:
    """Register the pipeline's agents that this worker runs on `app`, in stage order."""
    runs = settings.agent_names
    history = history_agent.wire(app, settings, sink) if "history" in runs else None
    enrich = enrich_agent.wire(app, settings) if "enrich" in runs else None
    publish = publish_agent.wire(app, settings) if "publish" in runs else None
    return Pipeline(history=history, enrich=enrich, publish=publish)
