"""The pipeline, in order. Each stage is a Faust agent; stages hand each other typed records, and the
history path never waits on anything downstream of PostgreSQL.

  topic `alerts` (any producer, the webhook bridge)
    └─► history agent (agents/history): holes → ingest → dedup → state → enrich → sink (PostgreSQL, exactly
        once in effect) → table state → ack; dead letters to `alerts-dlq`
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from agents.history import agent as history_agent
from app.settings import Settings
from sinks.base import Sink


@dataclass(frozen=True)
class Pipeline:
    history: history_agent.HistoryAgent


def wire(app: faust.App, settings: Settings, sink: Sink) -> Pipeline:
    """Register every agent of the pipeline on `app`, in stage order."""
    history = history_agent.wire(app, settings, sink)
    return Pipeline(history=history)
