"""Time travel under the path prefix `/at/<RFC 3339>/`: the Alertmanager API as it answered at that moment, so
`amtool --alertmanager.url=http://host:6066/at/2026-11-20T10:00:00Z alert query` works unmodified.

Errors here look like Alertmanager's: its v2 API answers a 400 with a JSON string, which amtool prints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from web import models, params
from web.api import ApiView, HTTPProblem
from web.views import StatusV2, firing_alerts


def _moment(raw: str) -> datetime:
    return params.parse_time("at", raw, datetime.now(UTC), models.MAX_TIME_LEN)


class AlertsAt(ApiView):
    """`/at/{at}/api/v2/alerts`: GET /api/v2/alerts?at= by path, what was firing at `at`."""

    def error_body(self, message: str) -> Any:
        return message

    async def get(self, request: web.Request, at: str) -> web.Response:
        if "at" in params.query(request):
            raise HTTPProblem(400, "at: given in the path already; leave it out of the query")
        return await firing_alerts(self, params.read(request, models.AlertsAtParams), _moment(at))


class StatusAt(StatusV2):
    """`/at/{at}/api/v2/status`: the status amtool reads first; the moment is checked, the answer is today's."""

    def error_body(self, message: str) -> Any:
        return message

    async def get(self, request: web.Request, at: str) -> web.Response:  # type: ignore[override]  # the path's `at`
        _moment(at)
        return await super().get(request)
