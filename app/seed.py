"""A realistic history generated inside PostgreSQL, fast (not through the pipeline): for query-plan tests, the
benchmark and `alert-history seed`.

Event i (1 = newest) of n is received at `now - i * step`, step = `days` / n; it belongs to fingerprint
f = i * 7919 mod `fingerprints`, so each alert is heard every `fingerprints` events. An alert's events alternate
firing and resolved (a resolve carries its episode's startsAt, its firing's time, and ends when it is received);
each holds a few resends (`duplicates`, `last_seen_at` before the alert's next event). Labels: 200 alertnames,
50 namespaces, 30 jobs, 3 severities, an instance per alert; about 1% of events flapping. Then `alerts` holds each
alert's newest event, as the sink keeps it, and whatever the database derives from `alert_events` is rebuilt over
the range.

A day with no partition yet is loaded into a table of its own and attached once indexed (an index built once is
much faster than one kept up row by row); a day that exists (today) is loaded in place.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
from tqdm import tqdm

STRIDE = 7919  # a prime: i ↦ i * STRIDE mod fingerprints walks every fingerprint once per `fingerprints` events

# $1 n, $2 now, $3 µs between two events, $4 fingerprints, $5 first id, $6 first i, $7 last i, $8 day start,
# $9 day end.
SEED_SQL = """
INSERT INTO {table} (id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url,
                     received_at, last_seen_at, duplicates, flapping, severity, classification, decision)
SELECT $5::bigint + i,
       lpad(to_hex(f), 16, '0'),
       CASE WHEN firing THEN 'firing' ELSE 'resolved' END,
       jsonb_build_object('alertname', 'Alert' || (f % 200), 'namespace', 'ns' || (f % 50),
                          'instance', 'host' || f || ':9100', 'job', 'job' || (f % 30),
                          'severity', (ARRAY['critical', 'warning', 'info'])[1 + f % 3]),
       jsonb_build_object('summary', 'seeded event ' || i),
       CASE WHEN firing THEN ts ELSE ts - gap END,
       CASE WHEN firing THEN NULL ELSE ts END,
       'http://prometheus:9090/graph',
       ts, ts + (i % 7) * gap / 8, i % 7, i % 97 = 0,
       (ARRAY['critical', 'warning', 'info'])[1 + f % 3], NULL,
       CASE WHEN i + $4 > $1 THEN 'first_seen' ELSE 'transition' END
FROM (SELECT i, f, ((i - 1) / $4 + f) % 2 = 0 AS firing, ts, ($3::bigint * $4) * interval '1 microsecond' AS gap
      FROM (SELECT i, (i * {stride}) % $4 AS f, $2::timestamptz - (i * $3::bigint) * interval '1 microsecond' AS ts
            FROM generate_series($6::bigint, $7::bigint) AS i) AS g) AS s
WHERE ts >= $8 AND ts < $9
""".replace("{stride}", str(STRIDE))

# Each alert's newest event (i ≤ fingerprints) as the sink's current state: its episodes are the firing events
# among its k = (n - i) / fingerprints + 1, which alternate ending with this one.
ALERTS_SQL = """
INSERT INTO alerts AS a (fingerprint, labels, annotations, status, starts_at, ends_at, generator_url, since,
                         last_seen_at, last_event_id, episodes, flapping, severity, receiver)
SELECT fingerprint, labels, annotations, status, starts_at, ends_at, generator_url, received_at, last_seen_at, id,
       CASE WHEN status = 'firing' THEN (k + 1) / 2 ELSE k / 2 END, flapping, severity, receiver
FROM (SELECT *, (($1::bigint - (id - $3::bigint)) / $2::bigint + 1)::int AS k
      FROM alert_events WHERE id > $3::bigint AND id <= $3::bigint + least($1::bigint, $2::bigint)) AS newest
ON CONFLICT (fingerprint) DO UPDATE SET
    labels = excluded.labels, annotations = excluded.annotations, status = excluded.status,
    starts_at = excluded.starts_at, ends_at = excluded.ends_at, generator_url = excluded.generator_url,
    since = excluded.since, last_seen_at = excluded.last_seen_at, last_event_id = excluded.last_event_id,
    episodes = excluded.episodes, flapping = excluded.flapping, severity = excluded.severity
"""

SEED_FIRST_ID = 1 << 61  # topic code 2048 (bit 50 up): far above the codes of the topics a database has read
# Tables other parts of the schema derive from alert_events, each with its idempotent rebuild over a range.
REBUILDS = ("alert_history_rollups_rebuild", "alert_history_episodes_rebuild")


async def seed(database_url: str, n: int, days: int, fingerprints: int = 20_000) -> tuple[int, list[str]]:
    """Migrate, then seed `n` events ending now, ids after any the database holds: (the id before the first, the
    rebuild functions called). Seeding again adds another history beside the first."""
    from app.migrate import migrate

    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        first_id = await next_first_id(conn)
        called = await seed_events(conn, n, days=days, now=datetime.now(UTC), fingerprints=fingerprints,
                                   first_id=first_id, progress=True)  # fmt: skip
    finally:
        await conn.close()
    return first_id, called


async def next_first_id(conn: asyncpg.Connection) -> int:
    """A `first_id` for seeding beside what the database holds: its ids, seeded ones included, stay below it."""
    return max(SEED_FIRST_ID, int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM alert_events")))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


async def seed_events(
    conn: asyncpg.Connection,
    n: int,
    *,
    days: int,
    now: datetime,
    fingerprints: int = 20_000,
    first_id: int = SEED_FIRST_ID,
    progress: bool = False,
) -> list[str]:
    """Insert `n` events over the `days` before `now`, derive `alerts` and the rebuilt tables, then VACUUM
    ANALYZE. Returns the rebuild functions called (those the database has)."""
    if fingerprints % STRIDE == 0:
        raise ValueError(f"fingerprints: a multiple of {STRIDE} would give every event one fingerprint")
    span = timedelta(days=days)
    step_us = int(span / timedelta(microseconds=1)) // n  # whole µs apart: an episode's times add up exactly
    first_day, last_day = (now - span).astimezone(UTC).date(), now.astimezone(UTC).date()
    per_s = 1e6 / step_us
    with tqdm(total=n, desc="seed", unit="ev", disable=not progress, dynamic_ncols=True, mininterval=1) as bar:
        for k in range((last_day - first_day).days + 1):
            day = first_day + timedelta(days=k)
            start, end = _midnight(day), _midnight(day + timedelta(days=1))
            # i of the day's events, widened by 2 against rounding; the WHERE keeps each row in its day.
            lo = max(1, math.floor((now - end).total_seconds() * per_s) - 2)
            hi = min(n, math.ceil((now - start).total_seconds() * per_s) + 2)
            if lo > hi:
                continue
            args = (n, now, step_us, fingerprints, first_id, lo, hi, start, end)
            bar.update(await _load_day(conn, day, args))
        await conn.execute("SELECT alert_events_ensure_partition($1)", last_day + timedelta(days=1))
    await conn.execute(ALERTS_SQL, n, fingerprints, first_id)
    # Statistics first: the rebuilds' plans on tables the planner has never seen sorted and joined for ever.
    await conn.execute("ANALYZE alert_events")
    await conn.execute("ANALYZE alerts")
    called = []
    for name in REBUILDS:
        if await conn.fetchval("SELECT to_regprocedure($1) IS NOT NULL", f"{name}(timestamptz, timestamptz)"):
            await conn.execute(f"SELECT {name}($1, $2)", _midnight(first_day), _midnight(last_day + timedelta(1)))
            called.append(name)
    await conn.execute("VACUUM ANALYZE alert_events")  # as autovacuum would: GIN pending lists flushed
    await conn.execute("ANALYZE alerts")
    return called


async def _load_day(conn: asyncpg.Connection, day: date, args: tuple[object, ...]) -> int:
    """One day's events: into its partition when it exists, else into a new table then attached as it."""
    name = f"alert_events_{day:%Y%m%d}"
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
        return _count(await conn.execute(SEED_SQL.format(table=name), *args))
    start, end = args[7], args[8]
    async with conn.transaction():
        await conn.execute(f"CREATE TABLE {name} (LIKE alert_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                           " WITH (fillfactor = 70)")  # fmt: skip
        loaded = _count(await conn.execute(SEED_SQL.format(table=name), *args))
        # The bound as a constraint first: ATTACH then takes it as proof, without scanning the rows again.
        await conn.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bound CHECK (received_at >= '{start}' "
                           f"AND received_at < '{end}')")  # fmt: skip
        await conn.execute(f"ALTER TABLE alert_events ATTACH PARTITION {name} FOR VALUES FROM ('{start}') TO ('{end}')")
        await conn.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bound")
    return loaded


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"
