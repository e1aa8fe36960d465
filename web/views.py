"""HTTP handlers: short, translating between HTTP and the domain. Errors are mapped in web.api."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

import orjson
import prometheus_client
from aiohttp import web

from agents import ingest
from app import metrics
from app.errors import InvalidAlert
from app.matchers import matchers_to_sql
from app.models import PostableAlerts, WebhookIn
from app.produce import OutMessage, bridge, max_message_size, message_size
from web import openapi, params
from web.api import ApiView, HTTPProblem, json_response, read_json, rfc3339
from web.queries import BUCKETS, HistoryQuery, ReportQuery, episodes, event_json, gettable_alert


def topic_messages(app: Any, sent: list[Any], receiver: str | None, source: str) -> list[OutMessage]:
    """Each alert as it was sent, with its receiver and source, keyed by its fingerprint: the exact bytes that go
    on the topic, checked with the worker's own decoder (agents.ingest.parse), so what is accepted is stored.
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
            fingerprint = ingest.checked(value)
        except orjson.JSONEncodeError as exc:  # deeper than orjson writes
            raise InvalidAlert(f"alerts.{i}: nested too deeply to forward ({exc})") from None
        except ingest.Rejected as exc:
            raise InvalidAlert(exc.within(f"alerts.{i}")) from None
        message = OutMessage(topic, fingerprint.encode(), value)
        if (size := message_size(message)) > limit:  # Kafka would refuse it however often it is sent
            raise HTTPProblem(
                413, f"alerts.{i}: {size} bytes as a Kafka message, more than the {limit} bytes Kafka takes: shorten it"
            )
        out.append(message)
    return out


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
        q = request.query
        wanted = {flag: params.boolean(q, flag, True) for flag in ("active", "silenced", "inhibited", "unprocessed")}
        receiver = params.regex(q, "receiver")
        if not wanted["active"]:
            return json_response([])  # nothing here is silenced, inhibited or unprocessed: all is active
        clauses, args = matchers_to_sql(params.matchers(q), "labels", 1)
        sql = (
            "SELECT fingerprint, labels, annotations, starts_at, ends_at, generator_url, last_seen_at, receiver "
            "FROM alerts WHERE status = 'firing' AND (ends_at IS NULL OR ends_at > now()) "
            + "".join(f"AND {c} " for c in clauses)
            + "ORDER BY starts_at, fingerprint"
        )
        async with self.snapshot() as conn:
            rows = await conn.fetch(sql, *args)
        alerts = [gettable_alert(r) for r in rows]
        if receiver is not None:
            alerts = [a for a in alerts if any(receiver.fullmatch(x["name"]) for x in a["receivers"])]
        return json_response(alerts)

    async def post(self, request: web.Request) -> web.Response:
        _, sent = await read_json(request, PostableAlerts, wrap=lambda data: {"alerts": data})
        messages = topic_messages(self.app, sent["alerts"], None, "alertmanager-api")
        await bridge(self.app).produce(messages)
        metrics.ACCEPTED.labels("/api/v2/alerts").inc(len(messages))
        return json_response({"accepted": len(messages)})


class History(ApiView):
    async def get(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        since, until = params.time_range(q, datetime.now(UTC))
        ndjson = q.get("format") == "ndjson"
        if q.get("format") not in (None, "", "json", "ndjson"):
            raise HTTPProblem(400, f"format: must be json or ndjson, got {q.get('format')!r}")
        query = HistoryQuery(
            matchers=params.matchers(q),
            since=since,
            until=until,
            status=params.status(q),
            before=params.decode_cursor(q),
            limit=None if ndjson else params.integer(q, "limit", 100, 1, 1000),
        )
        if ndjson:
            return await self._stream(request, query)
        sql, args = query.sql()
        async with self.snapshot() as conn:
            rows = await conn.fetch(sql, *args)
        last = rows[-1] if query.limit and len(rows) == query.limit else None
        nxt = params.encode_cursor(last["received_at"], last["id"]) if last else None
        return json_response({"items": [event_json(r) for r in rows], "next": nxt})

    async def _stream(self, request: web.Request, query: HistoryQuery) -> web.StreamResponse:
        """Every match, one JSON object a line, read through a server-side cursor (bounded memory)."""
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        sql, args = query.sql()
        async with self.snapshot() as conn:
            async for row in conn.cursor(sql, *args, prefetch=500):
                await resp.write(orjson.dumps(event_json(row)) + b"\n")
        await resp.write_eof()
        return resp


class AlertTimeline(ApiView):
    async def get(self, request: web.Request, fingerprint: str) -> web.Response:
        if len(fingerprint) != 16 or any(c not in "0123456789abcdef" for c in fingerprint):
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
        q = request.query
        now = datetime.now(UTC)
        since, until = params.time_range(q, now)
        bucket = q.get("bucket") or "1h"
        if bucket not in BUCKETS:
            raise HTTPProblem(400, f"bucket: must be one of {', '.join(BUCKETS)}, got {bucket!r}")
        report = ReportQuery(
            since=since or (until or now) - timedelta(days=1),
            until=until or now,
            matchers=params.matchers(q),
            top=params.integer(q, "top", 10, 1, 100),
            bucket=BUCKETS[bucket],
        )
        async with self.snapshot() as conn:
            return json_response(await report.run(conn))


class StatusV2(ApiView):
    """Alertmanager API v2 `/api/v2/status`: what amtool reads before it talks to us."""

    started = datetime.now(UTC)

    async def get(self, request: web.Request) -> web.Response:
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
    """Ready when Kafka and PostgreSQL answer; Redis is reported, never required."""

    async def get(self, request: web.Request) -> web.Response:
        checks = await asyncio.gather(self._kafka(), self._postgres(), self._redis())
        report: dict[str, object] = dict(zip(("kafka", "postgres", "redis"), checks, strict=True))
        ready = report["kafka"] == "ok" and report["postgres"] == "ok"
        # Reported, not required: a worker of a larger group may rightly own none; a web node takes none.
        if self.app.settings.pipeline_enabled:
            topic = self.app.settings.topic
            report["assigned_partitions"] = sum(1 for tp in self.app.consumer.assignment() if tp.topic == topic)
        else:
            report["role"] = "web node: bridge and reads, no partitions"
        return json_response({"ready": ready, "checks": report}, status=200 if ready else 503)

    async def _kafka(self) -> str:
        try:
            client = self.app.producer._ensure_producer().client
            await asyncio.wait_for(client.fetch_all_metadata(), 3)
            return "ok"
        except Exception as exc:
            return f"error: {exc!r}"

    async def _postgres(self) -> str:
        try:
            await asyncio.wait_for(self.app.resources.db.fetchval("SELECT 1"), 3)
            return "ok"
        except Exception as exc:
            return f"error: {exc!r}"

    async def _redis(self) -> str:
        redis = self.app.resources.redis
        if redis is None:
            return "not configured" if not self.app.settings.redis_url else "unreachable (degraded)"
        try:
            await asyncio.wait_for(redis.ping(), 2)
            return "ok"
        except Exception as exc:
            return f"error: {exc!r}"


class Metrics(ApiView):
    async def get(self, request: web.Request) -> web.Response:
        return web.Response(
            body=prometheus_client.generate_latest(),
            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
        )
