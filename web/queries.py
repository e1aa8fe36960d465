"""Read-side SQL, all parameterised: history pages, per-alert timelines and reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.events import rfc3339
from app.matchers import Matcher, matchers_to_sql

EVENT_COLUMNS = (
    "id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, received_at, "
    "last_seen_at, duplicates, flapping, severity, classification, filter"
)

# Labels an equality matcher compares by value, for their (label, time) index (migration 015: alertname): a page of
# one alertname's rows is read in order, not filtered from the time index's rows (1 in 200 matched at 10M events).
BY_VALUE = ("alertname",)


@dataclass(frozen=True)
class HistoryQuery:
    matchers: Sequence[Matcher] = ()
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None
    fingerprint: str | None = None
    before: tuple[datetime, int] | None = None  # keyset cursor: (received_at, id) of the last row shown
    limit: int | None = 100
    oldest_first: bool = False

    def sql(self) -> tuple[str, list[Any]]:
        clauses, params = matchers_to_sql(self.matchers, "labels", 1, by_value=BY_VALUE)
        for column, op, value in (
            ("received_at", ">=", self.since),
            ("received_at", "<=", self.until),
            ("status", "=", self.status),
            ("fingerprint", "=", self.fingerprint),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} {op} ${len(params)}")
        if self.before is not None:
            # Row comparison: the (received_at DESC, id DESC) index walks straight to the next page.
            params.extend(self.before)
            op = ">" if self.oldest_first else "<"
            clauses.append(f"(received_at, id) {op} (${len(params) - 1}, ${len(params)})")
        where = " AND ".join(clauses) or "true"
        order = "received_at, id" if self.oldest_first else "received_at DESC, id DESC"
        sql = f"SELECT {EVENT_COLUMNS} FROM alert_events WHERE {where} ORDER BY {order}"
        if self.limit is not None:
            params.append(self.limit)
            sql += f" LIMIT ${len(params)}"
        return sql, params


NO_END = "0001-01-01T00:00:00.000Z"  # Alertmanager's "no end known"


def gettable_alert(row: Mapping[str, Any]) -> dict[str, Any]:
    """An `alerts` row in Alertmanager API v2's gettableAlert shape (every field amtool requires)."""
    return {
        "labels": row["labels"],
        "annotations": row["annotations"],
        "startsAt": rfc3339(row["starts_at"]),
        "endsAt": rfc3339(row["ends_at"]) or NO_END,
        "updatedAt": rfc3339(row["last_seen_at"]),
        "generatorURL": row["generator_url"],
        "fingerprint": row["fingerprint"],
        "receivers": [{"name": row["receiver"] or "alert-history"}],
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []},
    }


def episodes(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Firing → resolved episodes of one alert's timeline (rows oldest first), keyed by startsAt."""
    by_start: dict[datetime, dict[str, Any]] = {}
    for r in rows:
        ep = by_start.setdefault(
            r["starts_at"],
            {"startsAt": rfc3339(r["starts_at"]), "resolvedAt": None, "durationSeconds": None,
             "status": "firing", "events": 0, "flapping": False},
        )  # fmt: skip
        ep["events"] += 1
        ep["flapping"] = ep["flapping"] or r["flapping"]
        if r["status"] == "resolved" and ep["resolvedAt"] is None:
            resolved = _resolved_at(r)
            ep.update(
                status="resolved",
                resolvedAt=rfc3339(resolved),
                durationSeconds=max(0.0, (resolved - r["starts_at"]).total_seconds()),
            )
    return list(by_start.values())


def _resolved_at(row: Mapping[str, Any]) -> datetime:
    # Alertmanager's endsAt is when it resolved; a producer that sent none resolved it when we heard.
    ends = row["ends_at"]
    return ends if ends is not None and ends >= row["starts_at"] else row["received_at"]


# MTTR from resolved events: each carries its episode's startsAt and its endsAt, so an episode's
# duration needs no join back to its firing row. An episode counts once: its resolve seen again
# after a dedup window of silence is stored anew (first_seen) but is the same episode.
_DURATION = (
    "greatest(0, extract(epoch FROM (CASE WHEN ends_at >= starts_at THEN ends_at ELSE received_at END) - starts_at))"
)

BUCKETS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}


@dataclass(frozen=True)
class ReportQuery:
    since: datetime
    until: datetime
    matchers: Sequence[Matcher] = ()
    top: int = 10
    bucket: timedelta = BUCKETS["1h"]

    def _where(self) -> tuple[str, list[Any]]:
        clauses, params = matchers_to_sql(self.matchers, "labels", 3, by_value=BY_VALUE)
        return " AND ".join(["received_at >= $1", "received_at < $2", *clauses]), [self.since, self.until, *params]

    async def run(self, conn: asyncpg.Connection) -> dict[str, Any]:
        where, args = self._where()
        top = len(args) + 1
        # One pass per fingerprint serves the totals and both rankings (window functions rank it).
        per_alert = await conn.fetch(
            f"""WITH per_fp AS (
                    SELECT fingerprint, count(*) AS events, sum(duplicates) AS duplicates,
                           count(*) FILTER (WHERE flapping) AS flapping_events,
                           min(received_at) FILTER (WHERE flapping) AS first_flapping_at,
                           max(received_at) AS last_received_at
                    FROM alert_events WHERE {where} GROUP BY fingerprint),
                ranked AS (
                    SELECT *, events + duplicates AS notifications,
                           row_number() OVER (ORDER BY events + duplicates DESC, fingerprint) AS noisy_rank,
                           row_number() OVER (ORDER BY flapping_events DESC, fingerprint) AS flap_rank,
                           count(*) OVER () AS unique_alerts, sum(events) OVER () AS total_events,
                           sum(duplicates) OVER () AS duplicates_suppressed,
                           sum(flapping_events) OVER () AS total_flapping
                    FROM per_fp)
                SELECT r.*, l.labels FROM ranked AS r
                CROSS JOIN LATERAL (SELECT labels FROM alert_events e WHERE e.fingerprint = r.fingerprint
                                    AND e.received_at = r.last_received_at LIMIT 1) AS l
                WHERE r.noisy_rank <= ${top} OR (r.flap_rank <= ${top} AND r.flapping_events > 0)""",
            *args,
            self.top,
        )
        mttr = await conn.fetch(
            # The episodes' sort carries the alertname and the duration, not whole label sets, which made it an
            # external merge on disk (docs/performance.md).
            f"""SELECT alertname, GROUPING(alertname) = 1 AS overall,
                       count(*) AS episodes, avg(duration) AS mean,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration) AS p50,
                       percentile_cont(0.9) WITHIN GROUP (ORDER BY duration) AS p90
                FROM (SELECT DISTINCT ON (fingerprint, starts_at) labels->>'alertname' AS alertname,
                             {_DURATION} AS duration
                      FROM alert_events WHERE {where} AND status = 'resolved'
                      ORDER BY fingerprint, starts_at, received_at) AS episodes
                GROUP BY GROUPING SETS ((), (alertname))
                ORDER BY overall DESC, episodes DESC, alertname""",
            *args,
        )
        buckets = await conn.fetch(
            f"""SELECT date_bin(${top}, received_at, timestamptz '2000-01-01') AS start, status, severity,
                       count(*) AS events
                FROM alert_events WHERE {where} GROUP BY 1, 2, 3 ORDER BY 1""",
            *args,
            self.bucket,
        )
        overall = next((r for r in mttr if r["overall"]), None)
        return report_body(self, per_alert, {
            "overall": _seconds(overall["mean"]) if overall and overall["episodes"] else None,
            "p50": _seconds(overall["p50"]) if overall and overall["episodes"] else None,
            "p90": _seconds(overall["p90"]) if overall and overall["episodes"] else None,
            "episodes": int(overall["episodes"]) if overall else 0,
            "by_alertname": [
                {
                    "alertname": r["alertname"] or "",
                    "mttr_seconds": _seconds(r["mean"]),
                    "p50_seconds": _seconds(r["p50"]),
                    "p90_seconds": _seconds(r["p90"]),
                    "episodes": int(r["episodes"]),
                }
                for r in mttr
                if not r["overall"]
            ][: self.top],
        }, buckets)  # fmt: skip


def report_body(
    q: ReportQuery, per_alert: Sequence[Mapping[str, Any]], mttr_seconds: dict[str, Any],
    buckets: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """/report's answer, whichever path counted it (raw rows here, rollups in web/report_rollup.py): `per_alert`
    ranked rows whose first carries the totals, the MTTR object, and (start, status, severity, events) rows."""
    totals = per_alert[0] if per_alert else None
    noisiest = sorted((r for r in per_alert if r["noisy_rank"] <= q.top), key=lambda r: r["noisy_rank"])
    flapping = sorted(
        (r for r in per_alert if r["flapping_events"] and r["flap_rank"] <= q.top), key=lambda r: r["flap_rank"]
    )
    return {
        "since": rfc3339(q.since),
        "until": rfc3339(q.until),
        **{
            key: int(totals[column]) if totals else 0
            for key, column in (
                ("total_events", "total_events"),
                ("unique_alerts", "unique_alerts"),
                ("duplicates_suppressed", "duplicates_suppressed"),
                ("flapping_events", "total_flapping"),
            )
        },
        "top_alerts": [_ranked(r, "events", "duplicates", "notifications", "flapping_events") for r in noisiest],
        "flapping_alerts": [
            {
                **_ranked(r, "flapping_events"),
                "transitions": int(r["events"]),  # its rows in range: first sighting, transitions, resightings
                "firstFlappingAt": rfc3339(r["first_flapping_at"]),
            }
            for r in flapping
        ],
        "mttr_seconds": mttr_seconds,
        "bucket_seconds": int(q.bucket.total_seconds()),
        "buckets": _pivot(buckets),
    }


def _ranked(row: Mapping[str, Any], *counts: str) -> dict[str, Any]:
    return {
        "fingerprint": row["fingerprint"],
        "alertname": row["labels"].get("alertname", ""),
        "labels": row["labels"],
        **{c: int(row[c]) for c in counts},
        "lastReceivedAt": rfc3339(row["last_received_at"]),
    }


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _pivot(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """(start, status, severity, n) rows → one chart point per bucket."""
    points: dict[datetime, dict[str, Any]] = {}
    for r in rows:
        p = points.setdefault(
            r["start"], {"start": rfc3339(r["start"]), "total": 0, "by_status": {}, "by_severity": {}}
        )
        n = int(r["events"])
        p["total"] += n
        p["by_status"][r["status"]] = p["by_status"].get(r["status"], 0) + n
        p["by_severity"][r["severity"]] = p["by_severity"].get(r["severity"], 0) + n
    return list(points.values())


def firing_now_sql(matchers: Sequence[Matcher]) -> tuple[str, list[Any]]:
    """Alerts firing now, from the alerts rows (the sink's current state), as `gettable_alert` rows."""
    clauses, args = matchers_to_sql(matchers, "labels", 1)
    sql = (
        "SELECT fingerprint, labels, annotations, starts_at, ends_at, generator_url, last_seen_at, receiver "
        "FROM alerts WHERE status = 'firing' AND (ends_at IS NULL OR ends_at > now()) "
        + "".join(f"AND {c} " for c in clauses)
        + "ORDER BY starts_at, fingerprint"
    )
    return sql, args


# An episode firing at $1: the btree on its slot finds the ended ones, the partial index the open ones (migration
# 014); starts_at and ends_at decide.
FIRING_AT = (
    "(slot = ANY(alert_history_episode_slots($1::timestamptz)) OR slot IS NULL AND starts_at <= $1) "
    "AND starts_at <= $1 AND (ends_at IS NULL OR ends_at > $1)"
)


def firing_at_sql(matchers: Sequence[Matcher], at: datetime) -> tuple[str, list[Any]]:
    """Alerts firing at `at`, from their episodes (migration 013), as `gettable_alert` rows; one per alert (its
    latest-starting episode when a new startsAt came before the old one had ended)."""
    clauses, args = matchers_to_sql(matchers, "labels", 2)
    where = "".join(f" AND {c}" for c in clauses)
    sql = (
        "SELECT * FROM (SELECT DISTINCT ON (fingerprint) fingerprint, labels, annotations, starts_at, ends_at, "
        "generator_url, updated_at AS last_seen_at, receiver FROM alert_episodes "
        f"WHERE {FIRING_AT}{where} ORDER BY fingerprint, starts_at DESC) AS firing "
        "ORDER BY starts_at, fingerprint"
    )
    return sql, [at, *args]


def history_at_sql(
    matchers: Sequence[Matcher], at: datetime, before: tuple[datetime, int] | None, limit: int | None
) -> tuple[str, list[Any]]:
    """/history?at=: for each alert firing at `at`, the event that opened its episode, newest first, paged by the
    same (received_at, id) cursor as /history. The page is cut on the episodes, before joining the events."""
    clauses, args = matchers_to_sql(matchers, "labels", 2)
    where = "".join(f" AND {c}" for c in clauses)
    params: list[Any] = [at, *args]
    page = ""
    if before is not None:
        params.extend(before)
        page = f"WHERE (event_received_at, event_id) < (${len(params) - 1}, ${len(params)}) "
    cut = ""
    if limit is not None:
        params.append(limit)
        cut = f" LIMIT ${len(params)}"
    sql = (
        f"SELECT {', '.join('e.' + c.strip() for c in EVENT_COLUMNS.split(','))} FROM (SELECT * FROM ("
        "SELECT DISTINCT ON (fingerprint) event_id, event_received_at FROM alert_episodes "
        f"WHERE {FIRING_AT}{where} ORDER BY fingerprint, starts_at DESC) AS firing "
        f"{page}ORDER BY event_received_at DESC, event_id DESC{cut}) AS p "
        "JOIN alert_events AS e ON e.id = p.event_id AND e.received_at = p.event_received_at "
        "ORDER BY e.received_at DESC, e.id DESC"
    )
    return sql, params


def _sql_time(column: str) -> str:
    """`rfc3339` in SQL: UTC, to the millisecond, Z."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


def firing_at_json_sql(matchers: Sequence[Matcher], at: datetime) -> tuple[str, list[Any]]:
    """`firing_at_sql` as the JSON array of `gettable_alert`s, built by PostgreSQL: a moment can hold thousands of
    alerts, each otherwise decoded and re-encoded in Python (docs/performance.md has the difference)."""
    sql, args = firing_at_sql(matchers, at)
    alert = (
        "json_build_object('labels', labels, 'annotations', annotations, "
        f"'startsAt', {_sql_time('starts_at')}, 'endsAt', coalesce({_sql_time('ends_at')}, '{NO_END}'), "
        f"'updatedAt', {_sql_time('last_seen_at')}, 'generatorURL', generator_url, 'fingerprint', fingerprint, "
        "'receivers', json_build_array(json_build_object('name', coalesce(receiver, 'alert-history'))), "
        "'status', json_build_object('state', 'active', 'silencedBy', '[]'::json, 'inhibitedBy', '[]'::json, "
        "'mutedBy', '[]'::json))"
    )
    inner = sql.removeprefix("SELECT * FROM (").rsplit(") AS firing ORDER BY", 1)[0]
    return (
        f"SELECT coalesce(json_agg({alert} ORDER BY starts_at, fingerprint), '[]')::text FROM ({inner}) AS firing",
        args,
    )
