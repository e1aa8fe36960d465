"""The OpenAPI 3.1 description of every endpoint in web.routes (a test keeps the two in step)."""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, description: str, schema: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema or _STR, **extra}


_ERRORS = {
    "400": _json(_ref("Error"), "A parameter or the body is malformed; the message names it."),
    "401": _json(_ref("Error"), "ALERT_HISTORY_READ_TOKEN is set; the read or API token is missing or wrong."),
    "503": _json(_ref("Error"), "Kafka or PostgreSQL unavailable, or the query hit the statement timeout."),
}
_WRITE_ERRORS = {
    **_ERRORS,
    "401": _json(
        _ref("Error"),
        "ALERT_HISTORY_API_TOKEN is set and the bearer token is missing or wrong (on /webhook, a valid "
        "X-Alert-History-Signature passes instead when ALERT_HISTORY_WEBHOOK_SECRET is set).",
    ),
    "413": _json(
        _ref("Error"),
        "Body larger than ALERT_HISTORY_MAX_BODY_BYTES, or an alert (named) larger than a Kafka message may be; "
        "nothing was produced.",
    ),
    "415": _json(_ref("Error"), "Content-Type is not application/json."),
    "422": _json(_ref("Error"), "Valid JSON, but not an alert (the message names the field); nothing was produced."),
    "503": {
        **_json(
            _ref("Error"),
            "Kafka did not acknowledge within ALERT_HISTORY_PRODUCE_TIMEOUT, or ALERT_HISTORY_PRODUCE_MAX_WAITING "
            "requests already wait on it: send the whole request again after Retry-After (its alerts Kafka did take "
            "count as resends, never as new events).",
        ),
        "headers": {"Retry-After": {"description": "Seconds to wait before sending again.", "schema": _INT}},
    },
}
_FILTER = _param(
    "filter",
    'Alertmanager matcher (=, !=, =~, !~), e.g. `severity=~"crit.*"` or `{team="db",env!="dev"}`; repeatable, ANDed.',
    {"type": "array", "items": _STR},
    style="form",
    explode=True,
)
_SINCE = _param("since", "RFC 3339 time, `now`, or relative like `-6h`, `30m`, `7d`.")
_UNTIL = _param("until", "RFC 3339 time, `now`, or relative like `-1h`.")

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": _STR}},
    "Alert": {
        "type": "object",
        "description": "One element of an Alertmanager webhook `alerts[]` (also the Kafka topic message).",
        "required": ["labels"],
        "properties": {
            "labels": {**_LABELS, "minProperties": 1},
            "annotations": _LABELS,
            "startsAt": _TIME,
            "endsAt": _TIME,
            "generatorURL": _STR,
            "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
            "status": {"enum": ["firing", "resolved"]},
            "source": _STR,
            "receiver": _STR,
        },
    },
    "Webhook": {
        "type": "object",
        "description": "Alertmanager webhook payload, version 4.",
        "required": ["alerts"],
        "properties": {
            "version": _STR,
            "groupKey": _STR,
            "status": _STR,
            "receiver": _STR,
            "groupLabels": _LABELS,
            "commonLabels": _LABELS,
            "commonAnnotations": _LABELS,
            "externalURL": _STR,
            "alerts": {"type": "array", "items": _ref("Alert")},
        },
    },
    "Event": {
        "type": "object",
        "description": "One stored event: a (fingerprint, status, startsAt) as first seen, with its resend counters.",
        "properties": {
            "id": {"type": "string", "description": "63-bit integer as a string"},
            "fingerprint": _STR,
            "status": {"enum": ["firing", "resolved"]},
            "labels": _LABELS,
            "annotations": _LABELS,
            "startsAt": _TIME,
            "endsAt": {"type": ["string", "null"], "format": "date-time"},
            "generatorURL": _STR,
            "receivedAt": _TIME,
            "lastSeenAt": _TIME,
            "duplicates": _INT,
            "flapping": {"type": "boolean"},
            "severity": _STR,
            "classification": _STR,
        },
    },
    "Page": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("Event")},
            "next": {"type": ["string", "null"], "description": "cursor of the next page; null on the last"},
        },
    },
    "Episode": {
        "type": "object",
        "properties": {
            "startsAt": _TIME,
            "resolvedAt": {"type": ["string", "null"], "format": "date-time"},
            "durationSeconds": {"type": ["number", "null"]},
            "status": {"enum": ["firing", "resolved"]},
            "events": _INT,
            "flapping": {"type": "boolean"},
        },
    },
    "Timeline": {
        "type": "object",
        "properties": {
            "fingerprint": _STR,
            "labels": _LABELS,
            "items": {"type": "array", "items": _ref("Event")},
            "episodes": {"type": "array", "items": _ref("Episode")},
        },
    },
    "RankedAlert": {
        "type": "object",
        "properties": {
            "fingerprint": _STR,
            "alertname": _STR,
            "labels": _LABELS,
            "events": _INT,
            "duplicates": _INT,
            "notifications": _INT,
            "transitions": _INT,
            "flapping_events": _INT,
            "lastReceivedAt": _TIME,
        },
    },
    "Report": {
        "type": "object",
        "properties": {
            "since": _TIME,
            "until": _TIME,
            "total_events": _INT,
            "unique_alerts": _INT,
            "duplicates_suppressed": _INT,
            "flapping_events": _INT,
            "source": {
                "type": "string",
                "enum": ["rollup", "events"],
                "description": "Which path answered: the rollups, or a scan of the events (any filter). MTTR p50/p90"
                " from the rollups are within 2.19% of the scan's.",
            },
            "top_alerts": {"type": "array", "items": _ref("RankedAlert")},
            "flapping_alerts": {"type": "array", "items": _ref("RankedAlert")},
            "mttr_seconds": {
                "type": "object",
                "properties": {
                    "overall": {"type": ["number", "null"]},
                    "p50": {"type": ["number", "null"]},
                    "p90": {"type": ["number", "null"]},
                    "episodes": _INT,
                    "by_alertname": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "alertname": _STR,
                                "mttr_seconds": {"type": "number"},
                                "p50_seconds": {"type": "number"},
                                "p90_seconds": {"type": "number"},
                                "episodes": _INT,
                            },
                        },
                    },
                },
            },
            "bucket_seconds": _INT,
            "buckets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "start": _TIME,
                        "total": _INT,
                        "by_status": {"type": "object", "additionalProperties": _INT},
                        "by_severity": {"type": "object", "additionalProperties": _INT},
                    },
                },
            },
        },
    },
    "GettableAlert": {
        "type": "object",
        "description": "Alertmanager API v2 gettableAlert.",
        "required": ["labels", "annotations", "startsAt", "endsAt", "updatedAt", "fingerprint", "receivers", "status"],
        "properties": {
            "labels": _LABELS,
            "annotations": _LABELS,
            "startsAt": _TIME,
            "endsAt": _TIME,
            "updatedAt": _TIME,
            "generatorURL": _STR,
            "fingerprint": _STR,
            "receivers": {"type": "array", "items": {"type": "object", "properties": {"name": _STR}}},
            "status": {
                "type": "object",
                "properties": {
                    "state": {"enum": ["active", "suppressed", "unprocessed"]},
                    "silencedBy": {"type": "array", "items": _STR},
                    "inhibitedBy": {"type": "array", "items": _STR},
                    "mutedBy": {"type": "array", "items": _STR},
                },
            },
        },
    },
    "EnrichmentMode": {
        "type": "object",
        "required": ["mode", "scope"],
        "properties": {
            "mode": {"enum": ["transparent", "enriched", "transparent_with_recommendations"]},
            "scope": {"enum": ["cluster", "process"], "description": "cluster: kept in Redis, every node applies it"},
            "note": {**_STR, "description": "present when the mode is this process's alone (no Redis)"},
        },
    },
    "Readiness": {
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "checks": {
                "type": "object",
                "additionalProperties": True,
                "description": "Per-check status; only for a caller who may read (ALERT_HISTORY_READ_TOKEN).",
            },
        },
    },
}

_MODE_IN = {
    "type": "object",
    "required": ["mode"],
    "additionalProperties": False,
    "properties": {"mode": {"enum": ["transparent", "enriched", "transparent_with_recommendations"]}},
}

_HISTORY_PARAMS = [
    _FILTER,
    _SINCE,
    _UNTIL,
    _param("status", "Only events of this status.", {"enum": ["firing", "resolved"]}),
    _param("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
    _param("cursor", "The `next` of the previous page."),
    _param("format", "`ndjson` streams every match, one event a line.", {"enum": ["json", "ndjson"]}),
]

PATHS: dict[str, dict[str, Any]] = {
    "/webhook": {
        "post": {
            "summary": "Alertmanager webhook receiver: every alert of the body onto the topic.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Webhook")}}},
            "responses": {
                "202": _json({"type": "object", "properties": {"accepted": _INT}}, "Kafka acknowledged every alert."),
                **_WRITE_ERRORS,
            },
        }
    },
    "/api/v2/alerts": {
        "get": {
            "summary": "Alertmanager v2: alerts firing now (amtool alert query).",
            "parameters": [
                _FILTER,
                *(
                    _param(f, "Alertmanager flag; every alert here is active.", {"type": "boolean"})
                    for f in ("active", "silenced", "inhibited", "unprocessed")
                ),
                _param("receiver", "Regex on the receiver name."),
            ],
            "responses": {"200": _json({"type": "array", "items": _ref("GettableAlert")}, "Firing alerts."), **_ERRORS},
        },
        "post": {
            "summary": "Alertmanager v2 postable alerts (Prometheus `alerting.alertmanagers`) onto the topic.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "array", "items": _ref("Alert")}}},
            },
            "responses": {"200": _json({"type": "object"}, "Kafka acknowledged every alert."), **_WRITE_ERRORS},
        },
    },
    "/api/v2/status": {
        "get": {
            "summary": "Alertmanager v2 status (what amtool reads first).",
            "responses": {"200": _json({"type": "object"}, "cluster, versionInfo, config, uptime")},
        }
    },
    "/history": {
        "get": {
            "summary": "Stored events, newest first, by label matchers and time range.",
            "parameters": _HISTORY_PARAMS,
            "responses": {"200": _json(_ref("Page"), "One page (or, with format=ndjson, every match)."), **_ERRORS},
        }
    },
    "/alerts/{fingerprint}/history": {
        "get": {
            "summary": "One alert's timeline, oldest first, with its firing → resolved episodes.",
            "parameters": [
                {"name": "fingerprint", "in": "path", "required": True, "schema": {"pattern": "^[0-9a-f]{16}$"}}
            ],
            "responses": {
                "200": _json(_ref("Timeline"), "The timeline."),
                "404": _json(_ref("Error"), "No history for this fingerprint."),
                **_ERRORS,
            },
        }
    },
    "/report": {
        "get": {
            "summary": "Totals, noisiest and flapping alerts, MTTR overall and by alertname, counts per bucket.",
            "parameters": [
                _FILTER,
                _SINCE,
                _UNTIL,
                _param("top", "Length of each ranking.", {"type": "integer", "minimum": 1, "maximum": 100}),
                _param("bucket", "Time series step.", {"enum": ["1h", "1d"], "default": "1h"}),
            ],
            "responses": {"200": _json(_ref("Report"), "The report (default range: the last 24 h)."), **_ERRORS},
        }
    },
    "/enrichment/mode": {
        "get": {
            "summary": "The enrichment mode the workers apply to what they publish.",
            "responses": {"200": _json(_ref("EnrichmentMode"), "The mode."), **_ERRORS},
        },
        "put": {
            "summary": "Set the enrichment mode: every worker and web node within a second (Redis), else this process.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _MODE_IN}},
            },
            "responses": {
                "200": _json(_ref("EnrichmentMode"), "The mode now."),
                **_WRITE_ERRORS,
                "422": _json(_ref("Error"), "Not a mode (the message names the field)."),
                "503": _json(_ref("Error"), "Redis is configured but not answering: the mode was not changed."),
            },
        },
    },
    "/events": {
        "get": {
            "summary": "Server-Sent Events of new stored events (the events topic), live; resumable without gaps.",
            "description": "Each message's data is one event as /history returns it; its `id` is a resume cursor "
            "(the topic's offsets per partition). Send it back as the `Last-Event-ID` header (or `cursor`) to get "
            "every matching event missed, once. Comment lines are heartbeats; `event: gap` says the topic no longer "
            "held part of what a resume asked for. The stream starts at the topic's end unless resuming.",
            "parameters": [
                _FILTER,
                _param("cursor", "An SSE id of an earlier stream: resume after it (Last-Event-ID wins when both)."),
                {"name": "Last-Event-ID", "in": "header", "schema": _STR, "description": "The last SSE id seen."},
            ],
            "responses": {
                "200": {"description": "text/event-stream", "content": {"text/event-stream": {"schema": _STR}}},
                "404": _json(_ref("Error"), "ALERT_HISTORY_EVENTS_ENABLED is false: no events topic."),
                "429": _json(_ref("Error"), "ALERT_HISTORY_EVENTS_STREAMS streams open on this node; see Retry-After."),
                **_ERRORS,
            },
        }
    },
    "/": {
        "get": {
            "summary": "The dashboard (HTML; open: its data is read with the token by the page).",
            "responses": {"200": {"description": "the page", "content": {"text/html": {}}}},
        }
    },
    "/static/{name}": {
        "get": {
            "summary": "The dashboard's scripts, styles and icon (open; no data).",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
            "responses": {
                "200": {"description": "the file"},
                "304": {"description": "unchanged (If-None-Match)"},
                "404": _json(_ref("Error"), "No such file."),
            },
        }
    },
    "/openapi.json": {"get": {"summary": "This document.", "responses": {"200": _json({"type": "object"}, "")}}},
    "/healthz": {"get": {"summary": "Liveness.", "responses": {"200": _json({"type": "object"}, "alive")}}},
    "/readyz": {
        "get": {
            "summary": "Readiness: Kafka and PostgreSQL reachable (Redis reported, not required).",
            "responses": {
                "200": _json(_ref("Readiness"), "ready"),
                "503": _json(_ref("Readiness"), "not ready; checks say why"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (alert_history_*).",
            "responses": {"200": {"description": "text exposition", "content": {"text/plain": {}}}},
        }
    },
}


def document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "alert-history",
            "version": version,
            "description": "History of every Prometheus/Alertmanager alert: ingest, query, report.",
        },
        "paths": PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "webhookSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Alert-History-Signature",
                    "description": "sha256=<hex HMAC-SHA256 of the raw body, key ALERT_HISTORY_WEBHOOK_SECRET>",
                },
            },
        },
    }
