"""/report from the rollups of migration 012: the same document as the raw scan (web/queries.ReportQuery), MTTR
percentiles within 2.19% (the histogram's bound), reading raw rows only for the range's partial days (the per-alert
sums) or partial hours (the rest).

A range [since, until) is cut into pieces: whole UTC days (day rows), whole hours of the partial days (hour
rows; per alert there are none: its rows are read, or its day row less the day's rows outside the range, whichever
are fewer), and the partial hours at both ends (alert_events itself).
When the range covers most of the days kept, the per-alert and MTTR sums are taken as the all-time totals less
the pieces outside the range, which are then the fewer rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from web.queries import ReportQuery, _seconds, report_body

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
LOW = datetime(1, 1, 1, tzinfo=UTC)  # day-aligned ends of "everything", for the complement
HIGH = datetime(9999, 12, 31, tzinfo=UTC)
ZERO_BUCKET = -32768
BUCKETS_PER_DOUBLING = 16
# A percentile read from the histogram is within this factor of the exact one (2^(1/32) - 1 = 2.19%).
MTTR_RELATIVE_ERROR = 2 ** (1 / (2 * BUCKETS_PER_DOUBLING)) - 1


def _floor(t: datetime, width: timedelta) -> datetime:
    return ORIGIN + ((t - ORIGIN) // width) * width


def _ceil(t: datetime, width: timedelta) -> datetime:
    f = _floor(t, width)
    return f if f == t else f + width


@dataclass
class Pieces:
    days: list[tuple[datetime, datetime]] = field(default_factory=list)
    hours: list[tuple[datetime, datetime]] = field(default_factory=list)
    raw: list[tuple[datetime, datetime]] = field(default_factory=list)

    def __add__(self, other: Pieces) -> Pieces:
        return Pieces(self.days + other.days, self.hours + other.hours, self.raw + other.raw)


def split(x: datetime, y: datetime) -> Pieces:
    """[x, y) as whole days, then whole hours, then the rest."""
    p = Pieces()
    if x >= y:
        return p
    hx, hy = _ceil(x, HOUR), _floor(y, HOUR)
    if hx >= hy:
        p.raw.append((x, y))
        return p
    p.raw += [r for r in ((x, hx), (hy, y)) if r[0] < r[1]]
    dx, dy = _ceil(hx, DAY), _floor(hy, DAY)
    if dx >= dy:
        p.hours.append((hx, hy))
        return p
    p.hours += [r for r in ((hx, dx), (dy, hy)) if r[0] < r[1]]
    p.days.append((dx, dy))
    return p


class _Sql:
    """Positional parameters collected while a statement is built."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


MINUTE = timedelta(minutes=1)


Range = tuple[datetime, datetime]


def _cut(x: datetime, y: datetime, width: timedelta) -> tuple[list[Range], list[Range]]:
    """[x, y) as its whole `width` periods (one range, or none) and the rest at both ends."""
    a, b = _ceil(x, width), _floor(y, width)
    if a >= b:
        return [], [(x, y)] if x < y else []
    return [(a, b)], [r for r in ((x, a), (b, y)) if r[0] < r[1]]


def _minutes(x: datetime, y: datetime) -> list[Range]:
    """The whole minutes of [x, y) outside its whole hours."""
    return [m for rest in _cut(x, y, HOUR)[1] for m in _cut(*rest, MINUTE)[0]]


def _raw_ends(x: datetime, y: datetime) -> list[Range]:
    """What is left of [x, y) outside its whole hours and whole minutes."""
    return [r for rest in _cut(x, y, HOUR)[1] for r in _cut(*rest, MINUTE)[1]]


def _joined(ranges: Sequence[Range]) -> list[Range]:
    """The ranges with those that touch made one."""
    out: list[Range] = []
    for a, b in sorted(ranges):
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _day_end(t: datetime) -> datetime:
    """The midnight after `t` (the last instant there is on the last day of the calendar)."""
    d = _floor(t, DAY)
    return d + DAY if d < HIGH else datetime.max.replace(tzinfo=UTC)  # HIGH: the last day


def _by_day(ranges: Sequence[Range]) -> list[Range]:
    """The ranges cut at UTC midnights: each within one day."""
    out: list[Range] = []
    for a, b in ranges:
        while a < b:
            end = min(b, _day_end(a))
            out.append((a, end))
            a = end
    return out


def _span(a: datetime, b: datetime, live: Range) -> timedelta:
    """How much of [a, b) can hold rows: its part within `live` (the first day kept to now)."""
    return max(timedelta(0), min(b, live[1]) - max(a, live[0]))


def _alert_parts(sql: _Sql, pieces: Pieces, live: Range) -> list[str]:
    # Per alert there are day rows only (an alert's hour rows would be about as many as its rows): a partial day
    # [a, b) of day d is read from alert_events, either itself or, when that holds fewer rows, as d's day row less
    # the rows of [d, a) and [b, d + 1 day). Today's part of a range ending now is then its day row alone.
    days = list(pieces.days)
    raw: list[tuple[Range, str]] = []
    for a, b in _by_day(_joined(pieces.hours + pieces.raw)):
        d, e = _floor(a, DAY), _day_end(a)
        if _span(d, a, live) + _span(b, e, live) < _span(a, b, live):
            days.append((d, e))
            raw += [(r, "-") for r in ((d, a), (b, e)) if r[0] < r[1]]
        else:
            raw.append(((a, b), ""))
    parts = [
        "SELECT fingerprint, events, duplicates, flapping_events FROM report_alert_periods"
        f" WHERE grain = 'd' AND start >= {sql(a)} AND start < {sql(b)}"
        for a, b in days
    ]
    parts += [
        f"SELECT fingerprint, {sign}count(*), {sign}sum(duplicates), {sign}count(*) FILTER (WHERE flapping)"
        f" FROM alert_events WHERE received_at >= {sql(a)} AND received_at < {sql(b)} GROUP BY fingerprint"
        for (a, b), sign in raw
    ]
    return parts


def _mttr_parts(sql: _Sql, pieces: Pieces, sign: str) -> list[str]:
    parts = [
        f"SELECT alertname, bucket, {sign}episodes, {sign}seconds FROM report_mttr_periods"
        f" WHERE grain = '{g}' AND start >= {sql(a)} AND start < {sql(b)}"
        for g, ranges in (("d", pieces.days), ("h", pieces.hours))
        for a, b in ranges
    ]
    parts += [
        f"SELECT alertname, bucket, {sign}1::bigint, {sign}seconds FROM report_episodes"
        f" WHERE received_at >= {sql(a)} AND received_at < {sql(b)}"
        for a, b in pieces.raw
    ]
    return parts


def _bucket_value(bucket: int) -> float:
    return 0.0 if bucket == ZERO_BUCKET else 2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING)


def percentile(histogram: Sequence[tuple[int, int]], q: float) -> float | None:
    """percentile_cont(q) of the durations a histogram [(bucket, count)] (buckets ascending) holds, each read as
    its bucket's middle."""
    n = sum(c for _, c in histogram)
    if n == 0:
        return None
    pos = q * (n - 1)
    lo = math.floor(pos)

    def at(k: int) -> float:  # the k-th smallest (0-based)
        seen = 0
        for b, c in histogram:
            seen += c
            if k < seen:
                return _bucket_value(b)
        return _bucket_value(histogram[-1][0])

    v = at(lo)
    frac = pos - lo
    return v if frac == 0 else v + frac * (at(lo + 1) - v)


async def days_kept(conn: asyncpg.Connection) -> tuple[datetime, datetime] | None:
    row = await conn.fetchrow(
        "SELECT min(start) AS first, max(start) AS last FROM report_alert_periods WHERE grain = 'd'"
    )
    return None if row is None or row["first"] is None else (row["first"], row["last"] + DAY)


async def first_received(conn: asyncpg.Connection, first_day: datetime) -> datetime:
    """When the first row kept was received (on the first day kept: a fresh history starts within it)."""
    first = await conn.fetchval(
        "SELECT min(received_at) FROM alert_events WHERE received_at >= $1 AND received_at < $2",
        first_day,
        first_day + DAY,
    )
    return first or first_day


async def run(q: ReportQuery, conn: asyncpg.Connection) -> dict[str, Any]:
    """The report of `q` (no matchers: a filter is answered by the raw scan) from the rollups."""
    assert not q.matchers, "a filter is answered from alert_events"
    since, until = q.since, max(q.until, q.since)
    inside = split(since, until)
    # One core per report: a web node's readers run side by side on a few cores, and parallel workers' gathering
    # cost more CPU than they save (docs/performance.md). LOCAL: the read's transaction only.
    await conn.execute("SELECT set_config('max_parallel_workers_per_gather', '0', true)")
    kept = await days_kept(conn)
    # Where rows can be (from the first one kept to now), to weigh reading a partial day's rows against its day
    # row less the others'.
    live = (await first_received(conn, kept[0]) if kept else LOW, datetime.now(UTC))
    complement = False
    if kept is not None:
        first, last = kept
        total = (last - first) / DAY
        within = max(0.0, (min(last, until) - max(first, since)) / DAY)
        complement = total - within < within
    outside = split(LOW, since) + split(until, HIGH)

    # Per alert: totals, rankings.
    sql = _Sql()
    if complement:  # each alert's totals less its rows outside the range (a few alerts have any)
        parts = _alert_parts(sql, outside, live)
        outside_sums = (
            f"""SELECT fingerprint, sum(events)::bigint AS events, sum(duplicates)::bigint AS duplicates,
                       sum(flapping_events)::bigint AS flapping_events
                FROM ({" UNION ALL ".join(parts)}) AS u(fingerprint, events, duplicates, flapping_events)
                GROUP BY fingerprint"""
            if parts
            else "SELECT NULL::text AS fingerprint, 0::bigint AS events, 0::bigint AS duplicates, "
            "0::bigint AS flapping_events WHERE false"
        )
        per_fp = f"""SELECT t.fingerprint, t.events - coalesce(o.events, 0) AS events,
                            t.duplicates - coalesce(o.duplicates, 0) AS duplicates,
                            t.flapping_events - coalesce(o.flapping_events, 0) AS flapping_events
                     FROM report_alert_totals AS t LEFT JOIN ({outside_sums}) AS o USING (fingerprint)
                     WHERE t.events > coalesce(o.events, 0)"""
    else:
        parts = _alert_parts(sql, inside, live)
        # Sums of int4 (a period's counts fit) are int8 sums: far cheaper than numeric ones of int8.
        per_fp = f"""SELECT fingerprint, sum(events::int) AS events, sum(duplicates::int) AS duplicates,
                            sum(flapping_events::int) AS flapping_events
                     FROM ({" UNION ALL ".join(parts) or "SELECT NULL::text, 0, 0, 0 WHERE false"})
                          AS u(fingerprint, events, duplicates, flapping_events)
                     GROUP BY fingerprint HAVING sum(events::int) > 0"""
    top = sql(q.top)
    # The rankings as two top-N sorts, the totals as one pass (no window over every alert). Fingerprints are hex
    # (an alert's own, checked at the door): their order is the same under "C", which compares bytes.
    per_alert = (
        await conn.fetch(
            f"""WITH per_fp AS MATERIALIZED ({per_fp}),
                totals AS (
                    SELECT count(*) AS unique_alerts, sum(events) AS total_events,
                           sum(duplicates) AS duplicates_suppressed, sum(flapping_events) AS total_flapping
                    FROM per_fp),
                noisy AS (
                    SELECT *,
                           row_number() OVER (ORDER BY events + duplicates DESC, fingerprint COLLATE "C") AS noisy_rank
                    FROM (SELECT * FROM per_fp ORDER BY events + duplicates DESC, fingerprint COLLATE "C"
                          LIMIT {top}) AS n),
                flap AS (
                    SELECT *, row_number() OVER (ORDER BY flapping_events DESC, fingerprint COLLATE "C") AS flap_rank
                    FROM (SELECT * FROM per_fp WHERE flapping_events > 0
                          ORDER BY flapping_events DESC, fingerprint COLLATE "C" LIMIT {top}) AS f)
                SELECT coalesce(n.fingerprint, f.fingerprint) AS fingerprint,
                       coalesce(n.events, f.events) AS events, coalesce(n.duplicates, f.duplicates) AS duplicates,
                       coalesce(n.flapping_events, f.flapping_events) AS flapping_events,
                       coalesce(n.events, f.events) + coalesce(n.duplicates, f.duplicates) AS notifications,
                       coalesce(n.noisy_rank, {top} + 1) AS noisy_rank, coalesce(f.flap_rank, {top} + 1) AS flap_rank,
                       t.*
                FROM noisy AS n FULL JOIN flap AS f ON f.fingerprint = n.fingerprint CROSS JOIN totals AS t""",
            *sql.args,
        )
    )
    chosen = [r["fingerprint"] for r in per_alert]
    details: dict[str, Mapping[str, Any]] = {}
    if chosen:
        # The chosen alerts' last receipt (its labels) and first flapping event in the range: an index probe each.
        rows = await conn.fetch(
            """SELECT c.fingerprint, l.received_at AS last_received_at, l.labels, f.received_at AS first_flapping_at
               FROM unnest($1::text[]) AS c(fingerprint)
               CROSS JOIN LATERAL (SELECT received_at, labels FROM alert_events e WHERE e.fingerprint = c.fingerprint
                                   AND e.received_at >= $2 AND e.received_at < $3
                                   ORDER BY received_at DESC LIMIT 1) AS l
               LEFT JOIN LATERAL (SELECT received_at FROM alert_events e WHERE e.fingerprint = c.fingerprint
                                  AND e.flapping AND e.received_at >= $2 AND e.received_at < $3
                                  ORDER BY received_at LIMIT 1) AS f ON true""",
            chosen,
            since,
            until,
        )
        details = {r["fingerprint"]: r for r in rows}
    per_alert = [{**r, **details[r["fingerprint"]]} for r in per_alert]

    # MTTR: the histograms of the episodes whose first resolve is in the range, and the repeated resolves of
    # episodes whose first is not (before the range, or no longer kept).
    sql = _Sql()
    if complement:
        mparts = [
            "SELECT alertname, bucket, episodes, seconds FROM report_mttr_totals",
            *_mttr_parts(sql, outside, "-"),
        ]
    else:
        mparts = _mttr_parts(sql, inside, "")
    s, u = sql(since), sql(until)
    mparts.append(
        f"""SELECT alertname, bucket, 1::bigint, seconds FROM (
                SELECT DISTINCT ON (fingerprint, starts_at) alertname, bucket, seconds FROM report_resolve_repeats AS r
                WHERE received_at >= {s} AND received_at < {u}
                  AND (first_received_at < {s} OR NOT EXISTS (SELECT 1 FROM report_episodes AS x
                       WHERE x.fingerprint = r.fingerprint AND x.starts_at = r.starts_at))
                ORDER BY fingerprint, starts_at, received_at) AS repeats"""
    )
    mttr = await conn.fetch(
        f"""SELECT alertname, array_agg(bucket ORDER BY bucket) AS buckets,
                   array_agg(episodes ORDER BY bucket) AS counts, sum(episodes) AS episodes, sum(seconds) AS seconds
            FROM (SELECT alertname, bucket, sum(episodes) AS episodes, sum(seconds) AS seconds
                  FROM ({" UNION ALL ".join(mparts)}) AS u(alertname, bucket, episodes, seconds)
                  GROUP BY 1, 2 HAVING sum(episodes) > 0) AS h
            GROUP BY alertname ORDER BY sum(episodes) DESC, alertname""",
        *sql.args,
    )
    overall_hist: dict[int, int] = {}
    for r in mttr:
        for b, c in zip(r["buckets"], r["counts"], strict=True):
            overall_hist[b] = overall_hist.get(b, 0) + int(c)
    episodes = sum(int(r["episodes"]) for r in mttr)
    seconds = sum((Decimal(r["seconds"]) for r in mttr), Decimal(0))
    hist = sorted(overall_hist.items())

    def by_alertname(r: Mapping[str, Any]) -> dict[str, Any]:
        h = list(zip(r["buckets"], (int(c) for c in r["counts"]), strict=True))
        return {
            "alertname": r["alertname"],
            "mttr_seconds": _seconds(Decimal(r["seconds"]) / int(r["episodes"])),
            "p50_seconds": _seconds(percentile(h, 0.5)),
            "p90_seconds": _seconds(percentile(h, 0.9)),
            "episodes": int(r["episodes"]),
        }

    # Buckets: whole hours from report_counts, the partial ones from alert_events.
    sql = _Sql()
    width = sql(q.bucket)
    # Whole hours from report_counts, whole minutes of the partial hours from report_counts_minute, the rest
    # (at most two minutes) from alert_events.
    bparts = []
    origin = "timestamptz '2000-01-01'"
    for table, column, pieces in (
        ("report_counts", "hour", _cut(since, until, HOUR)[0]),
        ("report_counts_minute", "minute", _minutes(since, until)),
    ):
        bparts += [
            f"SELECT date_bin({width}, {column}, {origin}), status, severity, events FROM {table}"
            f" WHERE {column} >= {sql(a)} AND {column} < {sql(b)}"
            for a, b in pieces
        ]
    bparts += [
        f"SELECT date_bin({width}, received_at, {origin}), status, severity, count(*) FROM alert_events"
        f" WHERE received_at >= {sql(a)} AND received_at < {sql(b)} GROUP BY 1, 2, 3"
        for a, b in _raw_ends(since, until)
    ]
    buckets = (
        await conn.fetch(
            f"""SELECT start, status, severity, sum(events) AS events
                FROM ({" UNION ALL ".join(bparts)}) AS u(start, status, severity, events)
                GROUP BY 1, 2, 3 ORDER BY 1""",
            *sql.args,
        )
        if bparts
        else []
    )

    return report_body(q, per_alert, {
        "overall": _seconds(seconds / episodes) if episodes else None,
        "p50": _seconds(percentile(hist, 0.5)) if episodes else None,
        "p90": _seconds(percentile(hist, 0.9)) if episodes else None,
        "episodes": episodes,
        "by_alertname": [by_alertname(r) for r in mttr][: q.top],
    }, buckets)  # fmt: skip
