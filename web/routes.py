"""The URL table: every endpoint of the service, in one place."""

from __future__ import annotations

import faust

from web import dashboard, enrichment, events, timetravel, views

ROUTES: tuple[tuple[str, type[views.ApiView]], ...] = (
    ("/webhook", views.Webhook),
    ("/api/v2/alerts", views.AlertsV2),
    ("/history", views.History),
    ("/api/v2/status", views.StatusV2),
    ("/at/{at}/api/v2/alerts", timetravel.AlertsAt),
    ("/at/{at}/api/v2/status", timetravel.StatusAt),
    ("/alerts/{fingerprint}/history", views.AlertTimeline),
    ("/report", views.Report),
    ("/enrichment/mode", enrichment.EnrichmentModeView),
    ("/openapi.json", views.OpenAPI),
    ("/healthz", views.Healthz),
    ("/readyz", views.Readyz),
    ("/metrics", views.Metrics),
    ("/events", events.Events),
    ("/", dashboard.Dashboard),
    ("/static/{name}", dashboard.Static),
)


def register(app: faust.App) -> None:
    for path, view in ROUTES:
        app.page(path, name=view.__name__.lower())(view)
