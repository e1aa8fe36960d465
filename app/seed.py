"""A realistic history generated inside PostgreSQL: for query-plan tests and the benchmark.

Spread evenly over `days` up to `now`: 200 alertnames, 50 namespaces, 3 severities, `fingerprints`
distinct alerts, half of the events resolves, a resend count on each, about 1% flapping.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

SEED_SQL = """
INSERT INTO alert_events (id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url,
                          received_at, last_seen_at, duplicates, flapping, severity, classification, decision)
SELECT $5::bigint + i,
       lpad(to_hex(f), 16, '0'),
       CASE WHEN i % 2 = 0 THEN 'firing' ELSE 'resolved' END,
       jsonb_build_object('alertname', 'Alert' || (f % 200), 'namespace', 'ns' || (f % 50),
                          'instance', 'host' || f || ':9100', 'job', 'job' || (f % 30),
                          'severity', (ARRAY['critical', 'warning', 'info'])[1 + f % 3]),
       jsonb_build_object('summary', 'seeded event ' || i),
       ts - (i % 60) * interval '1 minute',
       CASE WHEN i % 2 = 0 THEN NULL ELSE ts END,
       'http://prometheus:9090/graph',
       ts, ts + (i % 5) * interval '1 minute', i % 7, i % 97 = 0,
       (ARRAY['critical', 'warning', 'info'])[1 + f % 3], NULL, 'first_seen'
FROM (SELECT i, (i * 7919) % $4 AS f, $2::timestamptz - (i * $3::interval / $1) AS ts
      FROM generate_series(1::bigint, $1::bigint) AS i) AS s
"""


async def seed_events(
    conn: asyncpg.Connection, n: int, *, days: int, now: datetime, fingerprints: int = 20_000, first_id: int = 1 << 61
) -> None:
    """Insert `n` events over the `days` before `now` (partitions created as needed), rebuild their rollups, then
    VACUUM ANALYZE."""
    start = (now - timedelta(days=days)).date()
    for k in range(days + 2):
        await conn.execute("SELECT alert_events_ensure_partition($1)", start + timedelta(days=k))
    await conn.execute(SEED_SQL, n, now, timedelta(days=days), fingerprints, first_id)
    # Loaded past the sink: /report's rollups (migration 012) are derived for those days.
    await conn.execute(
        "SELECT alert_history_rollups_rebuild($1, $2)", now - timedelta(days=days + 1), now + timedelta(days=1)
    )
    await conn.execute("VACUUM ANALYZE alert_events")  # as autovacuum would: GIN pending lists flushed
    await conn.execute("VACUUM ANALYZE report_alert_periods, report_alert_totals, report_mttr_periods, report_episodes")
