"""HTTP handlers: short, translating between HTTP and the domain. Errors are mapped in web.api."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import orjson
import prometheus_client
from aiohttp import web

from app import metrics, redact, validation
from app.errors import InvalidAlert
from app.events import from_row as event_json
from app.events import rfc3339
from app.faust_adapter import raw_producer
from app.matchers import Matcher
from app.models import FINGERPRINT, PostableAlerts, WebhookIn
from app.produce import OutMessage, bridge, max_message_size, message_size
from web import models, openapi, params, report
from web.api import ApiView, Busy, HTTPProblem, json_response, read_json
from web.queries import (
    BUCKETS,
    HistoryQuery,
    ReportQuery,
    episodes,
    firing_at_json_sql,
    firing_at_sql,
    firing_now_sql,
    gettable_alert,
    history_at_sql,
)
from web.stream import NdjsonStream

log = logging.getLogger(__name__)
FINGERPRINT_RE = re.compile(FINGERPRINT)


def topic_messages(app: Any, sent: list[Any], receiver: str | None, source: str) -> list[OutMessage]:
    """Each alert as it was sent, with its receiver and source, keyed by its fingerprint: the exact bytes that go
    on the topic, checked with the worker's own validation (app/validation.py), so what is accepted is stored.
    Forwarding the sender's object (not the model's re-rendering) keeps a resend byte-identical, which the
    pipeline decides without decoding. Any alert refused refuses the request, before anything is produced."""
    topic, limit = app.settings.topic, max_message_size(app)
    out = []
    for i, body in enumerate(sent):
        if type(body) is not dict:
            raise InvalidAlert(f"alerts.{i}: must be an alert object, got {type(body).__name__}")
        if receiver:
            body.setdefault("receiver", receiver)
        body.setdefault("source", source)
        try:
            value = orjson.dumps(body)
            fingerprint = validation.checked(value)
        except orjson.JSONEncodeError as exc:  # deeper than orjson writes
            raise InvalidAlert(f"alerts.{i}: nested too deeply to forward ({exc})") from None
        except validation.Rejected as exc:
            raise InvalidAlert(exc.within(f"alerts.{i}")) from None
        message = OutMessage(topic, fingerprint.encode(), value)
        if (size := message_size(message)) > limit:  # Kafka would refuse it however often it is sent
            raise HTTPProblem(
                413, f"alerts.{i}: {size} bytes as a Kafka message, more than the {limit} bytes Kafka takes: shorten it"
            )
        out.append(message)
    return out


async def firing_alerts(view: ApiView, q: params.Params, at: datetime | None) -> web.Response:
    """Alertmanager's gettable alerts firing now (the alerts rows), or at `at` (their episodes: time travel)."""
    wanted = {flag: q.boolean(flag) for flag in ("active", "silenced", "inhibited", "unprocessed")}
    receiver = q.regex("receiver")  # RE2, matched here in linear time
    matchers = q.matchers()
    if not wanted["active"]:
        return json_response([])  # nothing here is silenced, inhibited or unprocessed: all is active
    if at is not None and receiver is None:  # time travel: the answer as PostgreSQL writes it
        sql, args = firing_at_json_sql(matchers, at)
        async with view.snapshot(matchers) as conn:
            body = await conn.fetchval(sql, *args)
        return web.Response(text=body, content_type="application/json")
    sql, args = firing_at_sql(matchers, at) if at is not None else firing_now_sql(matchers)
    async with view.snapshot(matchers) as conn:
        rows = await conn.fetch(sql, *args)
    alerts = [gettable_alert(r) for r in rows]
    if receiver is not None:
        alerts = [a for a in alerts if any(receiver.fullmatch(x["name"]) for x in a["receivers"])]
    return json_response(alerts)


class Webhook(ApiView):
    """Alertmanager webhook receiver (payload version 4) → topic."""

    async def post(self, request: web.Request) -> web.Response:
        hook, sent = await read_json(request, WebhookIn)
        messages = topic_messages(self.app, sent["alerts"], hook.receiver, "alertmanager-webhook")
        await bridge(self.app).produce(messages)
        metrics.ACCEPTED.labels("/webhook").inc(len(messages))
        return json_response({"accepted": len(messages)}, status=202)


class AlertsV2(ApiView):
    """Alertmanager API v2 `/api/v2/alerts`: Prometheus can list us as an Alertmanager, amtool can query us."""

    async def get(self, request: web.Request) -> web.Response:
        q = params.read(request, models.AlertsParams)
        return await firing_alerts(self, q, q.moment("at"))

    async def post(self, request: web.Request) -> web.Response:
        _, sent = await read_json(request, PostableAlerts, wrap=lambda data: {"alerts": data})
        messages = topic_messages(self.app, sent["alerts"], None, "alertmanager-api")
        await bridge(self.app).produce(messages)
        metrics.ACCEPTED.labels("/api/v2/alerts").inc(len(messages))
        return json_response({"accepted": len(messages)})


class History(ApiView):
    streams = 0  # format=ndjson streams open in this process (this node)

    async def get(self, request: web.Request) -> web.StreamResponse:
        q = params.read(request, models.HistoryParams)
        since, until = q.time_range(datetime.now(UTC))
        ndjson = q.choice("format") == "ndjson"
        limit = q.integer("limit")
        at = q.moment("at")
        query = HistoryQuery(
            matchers=q.matchers(),
            since=since,
            until=until,
            status=q.choice("status"),
            before=q.cursor(),
            limit=None if ndjson else limit,
        )
        if at is None:
            sql, args = query.sql()
        else:  # time travel: one event per alert firing at that moment
            if since is not None or until is not None or query.status is not None:
                raise HTTPProblem(400, "at: a moment; it does not combine with since, until or status")
            sql, args = history_at_sql(query.matchers, at, query.before, query.limit)
        if ndjson:
            return await self._stream(request, query.matchers, sql, args)
        async with self.snapshot(query.matchers) as conn:
            rows = await conn.fetch(sql, *args)
        last = rows[-1] if query.limit and len(rows) == query.limit else None
        nxt = params.encode_cursor(last["received_at"], last["id"]) if last else None
        return json_response({"items": [event_json(r) for r in rows], "next": nxt})

    async def _stream(
        self, request: web.Request, matchers: Sequence[Matcher], sql: str, args: list[Any]
    ) -> web.StreamResponse:
        settings = self.app.settings
        if History.streams >= settings.ndjson_streams:
            raise Busy(
                429,
                f"format: {History.streams} ndjson streams already open on this node (ALERT_HISTORY_NDJSON_STREAMS); "
                "retry later, or read pages with limit and cursor",
                retry_after_s=5,
            )
        History.streams += 1
        try:
            stream = NdjsonStream(request, settings.ndjson_max_seconds, settings.ndjson_write_timeout)
            return await stream.run(self.snapshot(matchers), sql, args)
        finally:
            History.streams -= 1


class AlertTimeline(ApiView):
    async def get(self, request: web.Request, fingerprint: str) -> web.Response:
        params.read(request, models.NoParams)  # refuses what no read accepts (NUL, invalid UTF-8)
        if not FINGERPRINT_RE.fullmatch(fingerprint):
            raise HTTPProblem(400, "fingerprint: must be 16 lowercase hex digits")
        sql, args = HistoryQuery(fingerprint=fingerprint, limit=None, oldest_first=True).sql()
        async with self.snapshot() as conn:
            rows = await conn.fetch(sql, *args)
        if not rows:
            raise HTTPProblem(404, f"no history for fingerprint {fingerprint}")
        return json_response(
            {
                "fingerprint": fingerprint,
                "labels": rows[-1]["labels"],
                "items": [event_json(r) for r in rows],
                "episodes": episodes(rows),
            }
        )


class Report(ApiView):
    """Totals, noisiest and flapping alerts, MTTR and a time series, over a range (default: the last 24 h)."""

    async def get(self, request: web.Request) -> web.Response:
        q = params.read(request, models.ReportParams)
        now = datetime.now(UTC)
        since, until = q.time_range(now)
        bucket = q.choice("bucket")
        query = ReportQuery(
            since=since or params.day_before(until or now),
            until=until or now,
            matchers=q.matchers(),
            top=q.integer("top"),
            bucket=BUCKETS[bucket or "1h"],
        )
        async with self.snapshot(query.matchers) as conn:
            return json_response(await report.run(query, conn))


class StatusV2(ApiView):
    """Alertmanager API v2 `/api/v2/status`: what amtool reads before it talks to us."""

    started = datetime.now(UTC)

    async def get(self, request: web.Request) -> web.Response:
        params.read(request, models.NoParams)  # refuses what no read accepts (NUL, invalid UTF-8)
        return json_response(
            {
                "cluster": {"name": self.app.settings.app_id, "status": "disabled", "peers": []},
                "versionInfo": {
                    "version": version("alert-history"),
                    "revision": "",
                    "branch": "",
                    "buildUser": "",
                    "buildDate": "",
                    "goVersion": "none (alert-history, Python)",
                },
                "config": {"original": ""},
                "uptime": rfc3339(self.started),
            }
        )


class OpenAPI(ApiView):
    async def get(self, request: web.Request) -> web.Response:
        return json_response(openapi.document(version("alert-history")))


class Healthz(ApiView):
    async def get(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})


class Readyz(ApiView):
    """Ready when Kafka and PostgreSQL answer; Redis is reported, never required. Anyone sees ready or not;
    the per-check details only a caller who may read, and never an exception's text (it may name hosts)."""

    async def get(self, request: web.Request) -> web.Response:
        checks = await asyncio.gather(_probe("kafka", self._kafka), _probe("postgres", self._postgres), self._redis())
        report: dict[str, object] = dict(zip(("kafka", "postgres", "redis"), checks, strict=True))
        ready = report["kafka"] == "ok" and report["postgres"] == "ok"
        # Reported, not required: a worker of a larger group may rightly own none; a web node takes none.
        settings = self.app.settings
        if settings.pipeline_enabled:  # partitions of the first stage this worker runs (ALERT_HISTORY_AGENTS)
            runs = settings.agent_names
            topic = settings.topic if "history" in runs else settings.events_topic if "enrich" in runs else (
                settings.notify_topic)
            report["assigned_partitions"] = sum(1 for tp in self.app.consumer.assignment() if tp.topic == topic)
        else:
            report["role"] = "web node: bridge and reads, no partitions"
        body: dict[str, object] = {"ready": ready}
        if await self.may_read(request):
            body["checks"] = report
        return json_response(body, status=200 if ready else 503)

    async def _kafka(self) -> None:
        client = raw_producer(self.app).client
        await asyncio.wait_for(client.fetch_all_metadata(), 3)

    async def _postgres(self) -> None:
        await asyncio.wait_for(self.app.resources.db.fetchval("SELECT 1"), 3)

    async def _redis(self) -> str:
        redis = self.app.resources.redis
        if redis is None:
            return "not configured" if not self.app.settings.redis_url else "unreachable (degraded)"
        return await _probe("redis", lambda: asyncio.wait_for(redis.ping(), 2))


_last_failure: dict[str, str] = {}


async def _probe(check: str, call: Callable[[], Awaitable[object]]) -> str:
    """`ok`, or a short reason (the exception's type); its redacted message goes to the log when it changes,
    not on every probe."""
    try:
        await call()
    except Exception as exc:
        detail = redact.describe(exc)
        if _last_failure.get(check) != detail:
            _last_failure[check] = detail
            log.warning("readiness check %s failed: %s", check, detail)
        return "timeout" if isinstance(exc, TimeoutError) else f"unreachable: {type(exc).__name__}"
    _last_failure.pop(check, None)
    return "ok"


class Metrics(ApiView):
    async def get(self, request: web.Request) -> web.Response:
        return web.Response(
            body=prometheus_client.generate_latest(),
            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
        )
