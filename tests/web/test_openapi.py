"""/openapi.json is generated from web/models.py; real responses of every operation, from a real worker on real
Kafka and PostgreSQL, are held to it (jsonschema, Draft 2020-12), so the service and its document cannot drift."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import jsonschema
import pytest
from multidict import MultiDict
from openapi_spec_validator import validate as validate_spec

from app.events import rfc3339
from app.fingerprint import fingerprint
from app.matchers import MAX_FILTER_LEN, MAX_MATCHERS
from tests.fixtures import Worker, eventually, unique
from tests.web.test_report import _seed
from tests.web.test_webhook import am_alert, webhook
from web import auth, models, openapi, params
from web.queries import BUCKETS
from web.routes import ROUTES

FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
assert "date-time" in FORMATS.checkers, "times would go unchecked: rfc3339-validator (openapi-spec-validator's) missing"


@dataclass
class Call:
    method: str
    url: str  # the path with its values, and query string
    route: str  # the path as the document names it
    status: int
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None


class Checked:
    """The document, and which (route, method, status) real responses were checked against it."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    def schema(self, ref_or_schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
        root = {**ref_or_schema, "components": self.doc["components"]}  # `#/components/...` resolves in it
        return jsonschema.Draft202012Validator(root, format_checker=FORMATS)

    def response(self, route: str, method: str, status: int) -> dict[str, Any]:
        responses = self.doc["paths"][route][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {route}: {status} is not documented ({sorted(responses)})"
        self.seen.add((route, method.lower(), str(status)))
        return responses[str(status)]  # type: ignore[no-any-return]

    def body(self, route: str, method: str, status: int, ctype: str, body: bytes) -> Any:
        documented = self.response(route, method, status)
        media = documented.get("content", {})
        assert ctype in media or (not media and not body), f"{method} {route} {status}: {ctype} not in {list(media)}"
        if ctype != "application/json":
            return body
        value = json.loads(body)
        errors = sorted(self.schema(media[ctype]["schema"]).iter_errors(value), key=str)
        assert not errors, f"{method} {route} {status}: {[f'{list(e.path)}: {e.message}' for e in errors[:5]]}"
        return value

    def component(self, name: str, value: Any) -> None:
        errors = list(self.schema({"$ref": f"#/components/schemas/{name}"}).iter_errors(value))
        assert not errors, f"{name}: {[f'{list(e.path)}: {e.message}' for e in errors[:5]]}"


async def _document(http: aiohttp.ClientSession, worker: Worker) -> dict[str, Any]:
    async with http.get(f"{worker.url}/openapi.json", headers=worker.auth) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


async def _call(http: aiohttp.ClientSession, worker: Worker, checked: Checked, call: Call) -> Any:
    async with http.request(
        call.method, worker.url + call.url, json=call.json, data=call.data, headers=call.headers
    ) as r:
        body = await r.read()
        assert r.status == call.status, f"{call.method} {call.url}: {r.status} {body[:300]!r}"
        value = checked.body(call.route, call.method, r.status, r.content_type, body)
        for name in checked.response(call.route, call.method, r.status).get("headers", {}):
            if name in ("Retry-After", "WWW-Authenticate"):  # the ones a client needs to act on
                assert name in r.headers, f"{call.method} {call.url}: {name} missing"
        return value


async def test_the_document_is_valid_openapi_3_1_and_has_every_route_and_method(worker: Worker, http) -> None:
    doc = await _document(http, worker)
    validate_spec(doc)  # raises on any error (OpenAPI 3.1 and its JSON Schema dialect)
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {path for path, _ in ROUTES}
    for path, view in ROUTES:
        methods = {m for m in ("get", "post", "put", "patch", "delete") if m in vars(view)}
        assert methods == set(doc["paths"][path]), path
        for method, op in doc["paths"][path].items():
            need = auth.access(method, path)
            assert ("401" in op["responses"]) == (need is not auth.Access.OPEN), (method, path)
            assert (op["security"] == []) == (need is auth.Access.OPEN), (method, path)

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


def test_the_limits_in_the_document_are_those_of_the_models() -> None:
    doc = openapi.document("test")
    alert = doc["components"]["schemas"]["Alert"]["properties"]
    assert alert["labels"]["propertyNames"] == {"maxLength": 1024, "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
    assert alert["labels"]["additionalProperties"]["maxLength"] == 8192
    assert alert["labels"]["maxProperties"] == 256
    history = {p["name"]: p for p in doc["paths"]["/history"]["get"]["parameters"]}
    limit = history["limit"]["schema"]["anyOf"][0]  # or empty: the default
    assert (limit["minimum"], limit["maximum"], history["limit"]["schema"]["default"]) == (1, 1000, 100)
    assert history["since"]["schema"]["maxLength"] == models.MAX_TIME_LEN
    flapping = doc["components"]["schemas"]["FlappingAlert"]
    assert "firstFlappingAt" in flapping["required"]
    report = {p["name"]: p for p in doc["paths"]["/report"]["get"]["parameters"]}
    assert report["bucket"]["schema"]["anyOf"][0]["enum"] == list(BUCKETS)  # each one the report can step by
    events = {p["name"]: p["in"] for p in doc["paths"]["/events"]["get"]["parameters"]}
    assert events == {"filter": "query", "cursor": "query", "Last-Event-ID": "header"}


def test_reading_a_parameter_the_model_does_not_declare_is_an_error() -> None:
    q = params.Params(MultiDict({"limit": "5", "secret": "x"}), models.HistoryParams)
    assert q.integer("limit") == 5
    with pytest.raises(AssertionError, match="not a parameter of HistoryParams"):
        q.one("secret")
    with pytest.raises(AssertionError, match="not a parameter of NoParams"):
        params.Params(MultiDict(), models.NoParams).all("filter")


async def test_real_responses_of_every_operation_match_the_document(worker: Worker, http) -> None:
    checked = Checked(await _document(http, worker))
    run = unique()
    labels = await _seed(http, worker, run)
    flt = f'run="{run}"'

    async def seeded() -> bool:
        async with http.get(f"{worker.url}/report", params={"filter": flt, "since": "-1h"}) as r:
            rep = await r.json()
            return rep["total_events"] == 7 and bool(rep["flapping_alerts"])

    await eventually(seeded, what="the seeded events in the report")
    fp = fingerprint(labels["Flappy"])
    firing = {"alertname": "Open", "run": run}
    hook = webhook([am_alert(firing)])
    q = quote(flt)
    now = rfc3339(datetime.now(UTC))
    calls = [
        Call("POST", "/webhook", "/webhook", 202, json=hook),
        Call("POST", "/webhook", "/webhook", 400, data=b"{", headers={"Content-Type": "application/json"}),
        Call("POST", "/webhook", "/webhook", 415, data=b"{}", headers={"Content-Type": "text/plain"}),
        Call("POST", "/webhook", "/webhook", 422, json={"alerts": [{"labels": {"bad-name": "x"}}]}),
        Call("POST", "/webhook", "/webhook", 413, json={"alerts": [{"labels": {"a": "x" * 8000}}] * 600}),
        Call("POST", "/api/v2/alerts", "/api/v2/alerts", 200, json=[am_alert(firing)]),
        Call("POST", "/api/v2/alerts", "/api/v2/alerts", 422, json=[{"labels": {}}]),
        Call("GET", f"/api/v2/alerts?filter={q}", "/api/v2/alerts", 200),
        Call("GET", "/api/v2/alerts?active=maybe", "/api/v2/alerts", 400),
        Call("GET", "/api/v2/status", "/api/v2/status", 200),
        Call("GET", "/api/v2/status?x=%00", "/api/v2/status", 400),
        Call("GET", f"/api/v2/alerts?filter={q}&at=now", "/api/v2/alerts", 200),
        Call("GET", "/api/v2/alerts?at=yesterday", "/api/v2/alerts", 400),
        Call("GET", f"/at/{quote(now)}/api/v2/alerts?filter={q}", "/at/{at}/api/v2/alerts", 200),
        Call("GET", "/at/soon/api/v2/alerts", "/at/{at}/api/v2/alerts", 400),
        Call("GET", f"/at/{quote(now)}/api/v2/status", "/at/{at}/api/v2/status", 200),
        Call("GET", "/at/soon/api/v2/status", "/at/{at}/api/v2/status", 400),
        Call("GET", f"/history?filter={q}&at=now", "/history", 200),
        Call("GET", f"/history?filter={q}&limit=2", "/history", 200),
        Call("GET", f"/history?filter={q}&format=ndjson", "/history", 200),
        Call("GET", "/history?limit=0", "/history", 400),
        Call("GET", f"/alerts/{fp}/history", "/alerts/{fingerprint}/history", 200),
        Call("GET", "/alerts/0000000000000000/history", "/alerts/{fingerprint}/history", 404),
        Call("GET", "/alerts/nothex/history", "/alerts/{fingerprint}/history", 400),
        Call("GET", f"/report?filter={q}&since=-1h&bucket=1d", "/report", 200),
        Call("GET", "/report?top=101", "/report", 400),
        Call("GET", "/enrichment/mode", "/enrichment/mode", 200),
        Call("PUT", "/enrichment/mode", "/enrichment/mode", 422, json={"mode": "loud"}),
        Call("GET", "/events?filter=%7B", "/events", 400),
        Call("GET", "/events?cursor=nope", "/events", 400),
        Call("GET", "/", "/", 200),
        Call("GET", "/static/app.js", "/static/{name}", 200),
        Call("GET", "/static/nope.js", "/static/{name}", 404),
        Call("GET", "/openapi.json", "/openapi.json", 200),
        Call("GET", "/healthz", "/healthz", 200),
        Call("GET", "/readyz", "/readyz", 200),
        Call("GET", "/metrics", "/metrics", 200),
    ]
    bodies = [await _call(http, worker, checked, c) for c in calls]
    by_url = {(c.method, c.url): b for c, b in zip(calls, bodies, strict=True)}

    page = by_url[("GET", f"/history?filter={q}&limit=2")]
    assert len(page["items"]) == 2 and page["next"]
    for line in by_url[("GET", f"/history?filter={q}&format=ndjson")].splitlines():
        checked.component("Event", json.loads(line))
    report = by_url[("GET", f"/report?filter={q}&since=-1h&bucket=1d")]
    assert report["flapping_alerts"][0]["firstFlappingAt"]  # the field the hand-written document had missed
    assert by_url[("GET", f"/alerts/{fp}/history")]["episodes"]

    # The dashboard's 304s, and a mode PUT back to what it was.
    for url, route in (("/", "/"), ("/static/app.js", "/static/{name}")):
        async with http.get(worker.url + url) as r:
            etag = r.headers["ETag"]
        await _call(http, worker, checked, Call("GET", url, route, 304, headers={"If-None-Match": etag}))
    mode = by_url[("GET", "/enrichment/mode")]["mode"]
    await _call(http, worker, checked, Call("PUT", "/enrichment/mode", "/enrichment/mode", 200, json={"mode": mode}))

    await _events_frames_match(http, worker, checked, run)

    success = {(route, method) for route, ops in checked.doc["paths"].items() for method, op in ops.items()}
    tested = {(route, method) for route, method, status in checked.seen if status.startswith("2")}
    assert success == tested, f"operations with no 2xx response checked: {sorted(success - tested)}"


async def _events_frames_match(http: aiohttp.ClientSession, worker: Worker, checked: Checked, run: str) -> None:
    """/events: a 200 of text/event-stream whose data, for an alert sent while connected, is an Event."""
    url = f"{worker.url}/events?filter={'run=%22' + run + '%22'}"
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as r:
        checked.response("/events", "get", r.status)
        assert r.status == 200 and r.content_type in checked.response("/events", "get", 200)["content"]
        labels = {"alertname": "Streamed", "run": run}
        async with http.post(f"{worker.url}/webhook", json=webhook([am_alert(labels)])) as posted:
            assert posted.status == 202

        async def data_line() -> dict[str, Any]:
            async for raw in r.content:
                if raw.startswith(b"data: "):
                    return json.loads(raw[6:])  # type: ignore[no-any-return]
            raise AssertionError("the stream ended with no event")

        event = await asyncio.wait_for(data_line(), 30)
    checked.component("Event", event)
    assert event["labels"] == labels


async def test_long_request_lines_and_headers_get_json_answers(worker: Worker, http) -> None:
    """Filters of the longest length allowed, as many as allowed, every character percent-encoded (three times as
    long on the wire), reach the view and get its JSON answer, not the HTTP parser's plain-text 400; so does a
    long header."""
    checked = Checked(await _document(http, worker))
    longest = 'a="' + "%" * (MAX_FILTER_LEN - 4) + '"'
    await _call(http, worker, checked, Call("GET", f"/history?filter={quote(longest)}", "/history", 200))
    await _call(http, worker, checked, Call("GET", f"/history?filter={quote(longest + 'x')}", "/history", 400))
    most = "&".join([f"filter={quote(longest)}"] * MAX_MATCHERS)  # all the document allows: ~390 KB
    await _call(http, worker, checked, Call("GET", f"/history?{most}", "/history", 200))
    cursor = "v1." + ".".join(["0"] * 6000)  # 12 KB, not of this topic: a 400 naming the header
    await _call(http, worker, checked, Call("GET", "/events", "/events", 400, headers={"Last-Event-ID": cursor}))


async def test_401_of_every_guarded_operation_matches_the_document(make_worker: Callable[..., Worker], http) -> None:
    token, read = "api-" + secrets.token_hex(16), "read-" + secrets.token_hex(16)
    secured = make_worker(api_token=token, read_token=read)
    await secured.wait_ready()
    checked = Checked(await _document(http, secured))
    for route, ops in checked.doc["paths"].items():
        url = route.replace("{fingerprint}", "0123456789abcdef").replace("{name}", "app.js").replace("{at}", "now")
        for method in ops:
            if auth.access(method, route) is auth.Access.OPEN:
                continue
            call = Call(method.upper(), url, route, 401, json={} if method != "get" else None)
            await _call(http, secured, checked, call)
            wrong = Call(method.upper(), url, route, 401, headers={"Authorization": "Bearer wrong"})
            await _call(http, secured, checked, wrong)
    async with http.get(f"{secured.url}/readyz") as r:  # open, but its details only to a reader
        body = checked.body("/readyz", "get", r.status, r.content_type, await r.read())
        assert "checks" not in body
    secured.stop()
