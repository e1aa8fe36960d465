"""/openapi.json, generated: OPERATIONS says, per route and method, which models of web/models.py are its
parameters, body and responses; `document` turns them into OpenAPI 3.1 with each model's JSON schema under
components/schemas. Who may call an operation comes from web/auth.py's rule, not from here.

To add an endpoint: its models in web/models.py and one Op below; tests/web/test_openapi.py then wants a real
response of it checked against the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from web import auth, dashboard
from web import models as m

JSON = "application/json"
REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Response:
    description: str
    body: Any = None  # a type of web/models.py, sent as JSON; None: no JSON body (see `media`)
    media: tuple[str, ...] = ()  # other media types the response may have (their schema: a string)
    headers: tuple[str, ...] = ()  # response headers, by name (HEADERS)


@dataclass(frozen=True)
class Op:
    path: str
    method: Literal["get", "post", "put"]
    summary: str
    responses: dict[int, Response]
    query: type[BaseModel] | None = m.NoParams  # None: the view never reads the query string
    path_params: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    body: Any = None
    description: str = ""
    error: Any = m.Error  # the body of its errors, 401 included (the /at/ prefix answers as Alertmanager: a string)


HEADERS = {
    "Retry-After": ("Seconds to wait before sending again.", {"type": "integer", "minimum": 0}),
    "WWW-Authenticate": ("The Bearer challenge (RFC 6750).", {"type": "string"}),
    "ETag": ("The file's version, for If-None-Match.", {"type": "string"}),
}


def _error(description: str, *headers: str) -> Response:
    return Response(description, m.Error, headers=headers)


BAD = _error("A parameter is malformed; the message names it.")
UNAVAILABLE = _error("PostgreSQL unavailable, or the query hit the statement timeout.", "Retry-After")
READ_ERRORS = {400: BAD, 503: UNAVAILABLE}
# Under /at/, errors are Alertmanager's: a JSON string (amtool prints it).
AM_BAD = Response("A parameter or the moment is malformed; the message names it.", str)
AM_READ_ERRORS = {400: AM_BAD, 503: Response(UNAVAILABLE.description, str, headers=("Retry-After",))}
BODY_ERRORS = {
    400: _error("The body is empty or not JSON."),
    413: _error(
        "Body larger than ALERT_HISTORY_MAX_BODY_BYTES, or an alert (named) larger than a Kafka message may be; "
        "nothing was produced."
    ),
    415: _error("Content-Type is not application/json."),
    422: _error("Valid JSON, but not what the endpoint takes (the message names the field); nothing was produced."),
}
PRODUCE_ERRORS = {
    **BODY_ERRORS,
    503: _error(
        "Kafka did not acknowledge within ALERT_HISTORY_PRODUCE_TIMEOUT, or ALERT_HISTORY_PRODUCE_MAX_WAITING "
        "requests already wait on it: send the whole request again after Retry-After (its alerts Kafka did take "
        "count as resends, never as new events).",
        "Retry-After",
    ),
}
STATIC = Response("The file.", media=tuple(sorted(set(dashboard.CONTENT_TYPES.values()))), headers=("ETag",))
NOT_MODIFIED = Response("Unchanged since the ETag given in If-None-Match.", headers=("ETag",))

OPERATIONS: tuple[Op, ...] = (
    Op("/webhook", "post", "Alertmanager webhook receiver: every alert of the body onto the topic.",
       {202: Response("Kafka acknowledged every alert.", m.Accepted), **PRODUCE_ERRORS}, query=None, body=m.Webhook),
    Op("/api/v2/alerts", "get", "Alertmanager v2: alerts firing now, or at `at` (amtool alert query).",
       {200: Response("Firing alerts.", m.GettableAlerts), **READ_ERRORS}, m.AlertsParams),
    Op("/at/{at}/api/v2/alerts", "get", "/api/v2/alerts as it answered at `at` (time travel, for amtool's URL).",
       {200: Response("The alerts firing at that moment.", m.GettableAlerts), **AM_READ_ERRORS}, m.AlertsAtParams,
       path_params=m.AtPath, error=str),
    Op("/at/{at}/api/v2/status", "get", "/api/v2/status under the time-travel prefix (the moment is checked).",
       {200: Response("cluster, versionInfo, config, uptime", m.AlertmanagerStatus), 400: AM_BAD},
       path_params=m.AtPath, error=str),
    Op("/api/v2/alerts", "post", "Alertmanager v2 postable alerts (what Prometheus sends) onto the topic.",
       {200: Response("Kafka acknowledged every alert.", m.Accepted), **PRODUCE_ERRORS}, query=None,
       body=m.PostableAlerts),
    Op("/api/v2/status", "get", "Alertmanager v2 status (what amtool reads first).",
       {200: Response("cluster, versionInfo, config, uptime", m.AlertmanagerStatus), 400: BAD}),
    Op("/history", "get", "Stored events, newest first, by label matchers and time range.",
       {200: Response("One page, or with format=ndjson every match, one event a line (a last line of StreamEnd when "
                      "cut short).", m.Page, media=("application/x-ndjson",)),
        429: _error("format=ndjson: ALERT_HISTORY_NDJSON_STREAMS streams open on this node.", "Retry-After"),
        **READ_ERRORS}, m.HistoryParams),
    Op("/alerts/{fingerprint}/history", "get", "One alert's timeline, oldest first, with its episodes.",
       {200: Response("The timeline.", m.Timeline), 404: _error("No history for this fingerprint."), **READ_ERRORS},
       path_params=m.TimelinePath),
    Op("/report", "get", "Totals, noisiest and flapping alerts, MTTR overall and by alertname, counts per bucket.",
       {200: Response("The report (default range: the last 24 h).", m.Report), **READ_ERRORS}, m.ReportParams),
    Op("/enrichment/mode", "get", "The enrichment mode the workers apply to what they publish.",
       {200: Response("The mode.", m.ModeOut), 400: BAD}),
    Op("/enrichment/mode", "put", "Set the enrichment mode: every node within a second (Redis), else this process.",
       {200: Response("The mode now.", m.ModeOut), **BODY_ERRORS,
        503: _error("Redis is configured but not answering: the mode was not changed.", "Retry-After")},
       query=None, body=m.ModeIn),
    Op("/events", "get", "Server-Sent Events of new stored events (the events topic), live; resumable without gaps.",
       {200: Response("The stream.", media=("text/event-stream",)),
        404: _error("ALERT_HISTORY_EVENTS_ENABLED is false: no events topic."),
        429: _error("ALERT_HISTORY_EVENTS_STREAMS streams open on this node.", "Retry-After"),
        400: BAD, 503: _error("The events topic cannot be read from Kafka.", "Retry-After")},
       m.EventsParams, headers=m.EventsHeaders,
       description="Each message's data is one Event as /history returns it; its `id` is a resume cursor (the "
       "topic's offsets per partition). Send it back as the `Last-Event-ID` header (or `cursor`) to get every "
       "matching event missed, once. Comment lines are heartbeats; `event: gap` says the topic no longer held part "
       "of what a resume asked for. The stream starts at the topic's end unless resuming."),
    Op("/", "get", "The dashboard (HTML; open: the page reads its data with the token).",
       {200: Response("The page.", media=("text/html",), headers=("ETag",)), 304: NOT_MODIFIED, 400: BAD},
       headers=m.StaticHeaders),
    Op("/static/{name}", "get", "The dashboard's scripts, styles and icon (open; no data).",
       {200: STATIC, 304: NOT_MODIFIED, 404: _error("No such file.")}, query=None, path_params=m.StaticPath,
       headers=m.StaticHeaders),
    Op("/openapi.json", "get", "This document, generated from the models.",
       {200: Response("OpenAPI 3.1", m.OpenAPIDocument)}, query=None),
    Op("/healthz", "get", "Liveness.", {200: Response("alive", m.Health)}, query=None),
    Op("/readyz", "get", "Readiness: Kafka and PostgreSQL reachable (Redis reported, not required).",
       {200: Response("ready", m.Readiness), 503: Response("not ready; checks say why", m.Readiness)}, query=None),
    Op("/metrics", "get", "Prometheus metrics (alert_history_*).",
       {200: Response("The text exposition format.", media=("text/plain",))}, query=None),
)  # fmt: skip


class _Schemas:
    """JSON schemas of the models, each named model once under components/schemas."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, t: Any, mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        schema = _names_checked(TypeAdapter(t).json_schema(ref_template=REF, mode=mode))
        for name, sub in schema.pop("$defs", {}).items():
            self._add(name, sub)
        if isinstance(t, type) and issubclass(t, BaseModel):
            self._add(t.__name__, schema)
            return {"$ref": REF.format(model=t.__name__)}
        return schema

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        known = self.components.setdefault(name, schema)
        assert known == schema, f"two different schemas named {name}: rename one model"


def _names_checked(node: Any) -> Any:
    """pydantic writes a dict whose keys have a pattern as `patternProperties`, which leaves other keys free; the
    models refuse them (a label name must match), so the document says `propertyNames` with that pattern."""
    if isinstance(node, list):
        return [_names_checked(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _names_checked(v) for k, v in node.items()}
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict) and len(patterns) == 1 and "additionalProperties" not in node:
        [(pattern, values)] = patterns.items()
        del node["patternProperties"]
        node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
        node["additionalProperties"] = values
    return node


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(by_alias=True, ref_template=REF)
    assert "$defs" not in schema, f"{model.__name__}: parameters are plain values"
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", "")
        prop.pop("title", None)
        if "anyOf" in prop:  # `X | None = None`: absent, never null
            rest = [s for s in prop.pop("anyOf") if s != {"type": "null"}]
            prop = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **prop}
            if prop.get("default", 0) is None:
                del prop["default"]
        required = where == "path" or name in schema.get("required", ())
        kind = prop.get("type")
        takes_empty = kind == "array" or (kind == "string" and not {"enum", "pattern"} & set(prop))
        if not required and where == "query" and not takes_empty:
            # web/params.py reads an empty value (`limit=`) as absent: the default
            default = {"default": prop.pop("default")} if "default" in prop else {}
            prop = {"anyOf": [prop, {"type": "string", "maxLength": 0}], **default}
            description += " Empty: as if absent."
        param: dict[str, Any] = {"name": name, "in": where, "description": description, "schema": prop}
        if required:
            param["required"] = True
        if prop.get("type") == "array":
            param.update(style="form", explode=True)
        out.append(param)
    return out


def _security(op: Op) -> list[dict[str, list[str]]]:
    """Who may call it, by web/auth.py's rule; `{}`: anyone, while the token of its kind is not set."""
    need = auth.access(op.method, op.path)
    if need is auth.Access.OPEN:
        return []
    signed: list[dict[str, list[str]]] = []
    if need is auth.Access.WRITE and op.path in auth.SIGNED_ROUTES:
        signed.append({"webhookSignature": []})
    return [{"bearer": []}, *signed, {}]


_UNAUTHORIZED = {
    auth.Access.READ: "ALERT_HISTORY_READ_TOKEN is set and neither it nor the API token came as the bearer token.",
    auth.Access.WRITE: "ALERT_HISTORY_API_TOKEN is set and the bearer token is missing or wrong (on /webhook, a "
    "valid X-Alert-History-Signature passes instead when ALERT_HISTORY_WEBHOOK_SECRET is set).",
}


def _response(r: Response, schemas: _Schemas) -> dict[str, Any]:
    out: dict[str, Any] = {"description": r.description}
    content = {JSON: {"schema": schemas.of(r.body, "serialization")}} if r.body is not None else {}
    content.update({media: {"schema": {"type": "string"}} for media in r.media})
    if content:
        out["content"] = content
    if r.headers:
        out["headers"] = {h: {"description": HEADERS[h][0], "schema": HEADERS[h][1]} for h in r.headers}
    return out


def _operation(op: Op, schemas: _Schemas) -> dict[str, Any]:
    responses = dict(op.responses)
    need = auth.access(op.method, op.path)
    if need is not auth.Access.OPEN:
        responses[401] = Response(_UNAUTHORIZED[need], op.error, headers=("WWW-Authenticate",))
    out: dict[str, Any] = {
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}"
        or f"{op.method}_root",
        "summary": op.summary,
        "parameters": [
            *_parameters(op.path_params, "path"),
            *_parameters(op.query, "query"),
            *_parameters(op.headers, "header"),
        ],
        "responses": {str(s): _response(r, schemas) for s, r in sorted(responses.items())},
        "security": _security(op),
    }
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": schemas.of(op.body, "validation")}}}
    return out


@cache
def document(version: str) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        assert op.method not in paths.get(op.path, {}), f"{op.method} {op.path} twice in OPERATIONS"
        paths.setdefault(op.path, {})[op.method] = _operation(op, schemas)
    for name in ("Event", "StreamEnd"):  # the lines of /history's ndjson and the data of /events' messages
        schemas.of(getattr(m, name), "serialization")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "alert-history",
            "version": version,
            "description": "History of every Prometheus/Alertmanager alert: ingest, query, report. Generated from "
            "the models of web/models.py.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "webhookSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": auth.SIGNATURE_HEADER,
                    "description": "sha256=<hex HMAC-SHA256 of the raw body, key ALERT_HISTORY_WEBHOOK_SECRET>",
                },
            },
        },
    }
