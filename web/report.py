"""/report: from the rollups (web/report_rollup.py) when they can answer, else from alert_events (the reference,
web/queries.ReportQuery). The answer's `source` says which: "rollup" or "events"."""

from __future__ import annotations

from typing import Any

import asyncpg

from web import report_rollup
from web.queries import ReportQuery


def source(q: ReportQuery) -> str:
    """The rollups hold no labels but the alertname: any filter is answered from the events."""
    return "events" if q.matchers else "rollup"


async def run(q: ReportQuery, conn: asyncpg.Connection) -> dict[str, Any]:
    if source(q) == "rollup":
        return {**await report_rollup.run(q, conn), "source": "rollup"}
    return {**await q.run(conn), "source": "events"}
