-- Rollups for /report, kept by the history sink in the transaction that stores the rows they summarise.
--
-- Periods are UTC hours and days (date_bin from 2000-01-01, as /report's buckets). /report over [since, until)
-- reads whole days from the day rows, whole hours of the partial days from the hour rows (the per-alert sums:
-- from alert_events), and only the partial hours at both ends from alert_events; or, when the range covers most of what is kept, the all-time totals less
-- what lies outside the range (the same pieces, taken outside). See web/report_rollup.py.
--
-- report_counts          hour × status × severity → events (the charts' buckets); report_counts_minute the same
--                        by minute, for the partial hours at a range's ends
-- report_alert_periods   grain ('d' day) × start × fingerprint → events, resends (the rows' `duplicates`, of the
--                        rows received in that day: a resend after midnight counts onto its row's day), flapping
--                        events. No hour rows per alert: an alert has about as many of them as rows in
--                        alert_events (resends are counters, not rows), so the partial days of a range read the
--                        rows themselves, and the store path writes two rows a new row less. The ranked alerts'
--                        last receipt and first flapping event are read from alert_events (an index each: the
--                        second one partial, on flapping rows)
-- report_alert_totals    fingerprint → the sums of its day rows
-- report_episodes        (fingerprint, startsAt) → its first resolved row kept: received_at, alertname, duration,
--                        its histogram bucket. MTTR counts an episode at its first resolve.
-- report_resolve_repeats the later resolved rows of an episode (stored anew after a dedup window of silence):
--                        /report counts one when the episode's first resolve is outside the range (or dropped)
-- report_mttr_periods    grain × start × alertname × bucket → episodes, their total duration (exact mean)
-- report_mttr_totals     alertname × bucket → the sums of the day rows
--
-- Durations go to buckets 2^(1/16) wide (16 per doubling): bucket b holds [2^(b/16), 2^((b+1)/16)) seconds and is
-- read as its geometric middle, 2^((b+0.5)/16), so a percentile read from the histogram is within a factor
-- 2^(1/32) (2.19%) of the exact one (percentile_cont's interpolation between two order statistics keeps the
-- bound). Zero durations have their own bucket (-32768) and are exact.

CREATE TABLE report_counts (
    hour     timestamptz NOT NULL,
    status   text        NOT NULL,
    severity text        NOT NULL,
    events   bigint      NOT NULL,
    PRIMARY KEY (hour, status, severity)
) WITH (fillfactor = 80);

-- The same by minute: the partial hours at a range's ends (a batch adds a few rows: its events' minutes).
CREATE TABLE report_counts_minute (
    minute   timestamptz NOT NULL,
    status   text        NOT NULL,
    severity text        NOT NULL,
    events   bigint      NOT NULL,
    PRIMARY KEY (minute, status, severity)
) WITH (fillfactor = 80);

-- The first flapping event of a ranked alert in a range: flapping rows are about 1% of all.
CREATE INDEX alert_events_flapping ON alert_events (fingerprint, received_at) WHERE flapping;

CREATE TABLE report_alert_periods (
    grain             "char"      NOT NULL,   -- 'd' (a day; the column keeps the MTTR rows' layout)
    start             timestamptz NOT NULL,
    fingerprint       text        NOT NULL,
    events            bigint      NOT NULL,
    duplicates        bigint      NOT NULL,
    flapping_events   bigint      NOT NULL,
    PRIMARY KEY (grain, start, fingerprint)
) WITH (fillfactor = 80);  -- room for HOT updates: a busy alert's hour row is updated by every batch

CREATE TABLE report_alert_totals (
    fingerprint     text   PRIMARY KEY,
    events          bigint NOT NULL,
    duplicates      bigint NOT NULL,
    flapping_events bigint NOT NULL
) WITH (fillfactor = 80);

CREATE TABLE report_episodes (
    fingerprint text        NOT NULL,
    starts_at   timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    alertname   text        NOT NULL,
    seconds     numeric     NOT NULL,
    bucket      smallint    NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);
CREATE INDEX report_episodes_received_at ON report_episodes (received_at);

CREATE TABLE report_resolve_repeats (
    fingerprint       text        NOT NULL,
    starts_at         timestamptz NOT NULL,
    received_at       timestamptz NOT NULL,
    first_received_at timestamptz NOT NULL,
    alertname         text        NOT NULL,
    seconds           numeric     NOT NULL,
    bucket            smallint    NOT NULL,
    PRIMARY KEY (fingerprint, starts_at, received_at)
);
CREATE INDEX report_resolve_repeats_received_at ON report_resolve_repeats (received_at);

CREATE TABLE report_mttr_periods (
    grain     "char"      NOT NULL,
    start     timestamptz NOT NULL,
    alertname text        NOT NULL,
    bucket    smallint    NOT NULL,
    episodes  bigint      NOT NULL,
    seconds   numeric     NOT NULL,
    PRIMARY KEY (grain, start, alertname, bucket)
) WITH (fillfactor = 80);

CREATE TABLE report_mttr_totals (
    alertname text     NOT NULL,
    bucket    smallint NOT NULL,
    episodes  bigint   NOT NULL,
    seconds   numeric  NOT NULL,
    PRIMARY KEY (alertname, bucket)
) WITH (fillfactor = 80);

CREATE FUNCTION alert_history_mttr_bucket(seconds numeric) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN seconds <= 0 THEN -32768 ELSE floor(16 * ln(seconds::float8) / ln(2::float8))::int END::smallint
$$;

-- The rows of one batch, as the store function inserts them (the same expressions: the same instants).
CREATE FUNCTION alert_history_rollup_rows(p_events jsonb)
RETURNS TABLE (fingerprint text, status text, severity text, alertname text, starts_at timestamptz,
               received_at timestamptz, duplicates int, flapping bool, seconds numeric)
LANGUAGE sql STABLE AS $$
    SELECT fingerprint, status, severity, alertname, starts_at, received_at, duplicates, flapping,
           CASE WHEN status = 'resolved' THEN greatest(0, extract(epoch FROM
               (CASE WHEN ends_at >= starts_at THEN ends_at ELSE received_at END) - starts_at)) END
    FROM (SELECT r->>1 AS fingerprint, r->>2 AS status, r->>13 AS severity, coalesce(r->3->>'alertname', '') AS alertname,
                 alert_history_from_us((r->>5)::bigint) AS starts_at, alert_history_from_us((r->>6)::bigint) AS ends_at,
                 to_timestamp((r->>8)::bigint / 1e3::float8) AS received_at, (r->>11)::int AS duplicates,
                 (r->>12)::bool AS flapping
          FROM jsonb_array_elements(p_events) AS r) AS e
$$;

-- Adds one batch's new rows to the rollups. Called by alert_history_store_batch after it wrote them (same
-- transaction). Keys are upserted in order, so two writers never deadlock.
CREATE FUNCTION alert_history_rollups_batch(p_events jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    origin constant timestamptz := '2000-01-01T00:00:00Z';
BEGIN
    -- One statement: the batch's rows are parsed once, each rollup upserted by its own part.
    IF jsonb_array_length(p_events) > 0 THEN
        WITH e AS MATERIALIZED (SELECT * FROM alert_history_rollup_rows(p_events)),
        counts AS (
            INSERT INTO report_counts AS c (hour, status, severity, events)
            SELECT date_bin('1 hour', received_at, origin), status, severity, count(*)
            FROM e GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (hour, status, severity) DO UPDATE SET events = c.events + excluded.events),
        minutes AS (
            INSERT INTO report_counts_minute AS c (minute, status, severity, events)
            SELECT date_bin('1 minute', received_at, origin), status, severity, count(*)
            FROM e GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (minute, status, severity) DO UPDATE SET events = c.events + excluded.events),
        periods AS (
            INSERT INTO report_alert_periods AS p (grain, start, fingerprint, events, duplicates, flapping_events)
            SELECT 'd', date_bin('1 day', received_at, origin), fingerprint, count(*), sum(duplicates),
                   count(*) FILTER (WHERE flapping)
            FROM e GROUP BY 2, 3 ORDER BY 2, 3
            ON CONFLICT (grain, start, fingerprint) DO UPDATE SET
                events = p.events + excluded.events, duplicates = p.duplicates + excluded.duplicates,
                flapping_events = p.flapping_events + excluded.flapping_events),
        totals AS (
            INSERT INTO report_alert_totals AS t (fingerprint, events, duplicates, flapping_events)
            SELECT fingerprint, count(*), sum(duplicates), count(*) FILTER (WHERE flapping)
            FROM e GROUP BY 1 ORDER BY 1
            ON CONFLICT (fingerprint) DO UPDATE SET
                events = t.events + excluded.events, duplicates = t.duplicates + excluded.duplicates,
                flapping_events = t.flapping_events + excluded.flapping_events),
        -- A resolve is its episode's first unless one is kept already or an earlier one is in the batch.
        resolved AS (
            SELECT r.*, (SELECT x.received_at FROM report_episodes AS x
                         WHERE x.fingerprint = r.fingerprint AND x.starts_at = r.starts_at) AS kept_first
            FROM (SELECT fingerprint, starts_at, received_at, alertname, seconds,
                         alert_history_mttr_bucket(seconds) AS bucket,
                         row_number() OVER w AS n, min(received_at) OVER w AS batch_first
                  FROM e WHERE status = 'resolved'
                  WINDOW w AS (PARTITION BY fingerprint, starts_at ORDER BY received_at)) AS r),
        firsts AS (
            INSERT INTO report_episodes (fingerprint, starts_at, received_at, alertname, seconds, bucket)
            SELECT fingerprint, starts_at, received_at, alertname, seconds, bucket FROM resolved
            WHERE kept_first IS NULL AND n = 1
            ORDER BY fingerprint, starts_at
            ON CONFLICT (fingerprint, starts_at) DO NOTHING
            RETURNING *),
        repeats AS (
            INSERT INTO report_resolve_repeats (fingerprint, starts_at, received_at, first_received_at, alertname,
                                                seconds, bucket)
            SELECT fingerprint, starts_at, received_at, coalesce(kept_first, batch_first), alertname, seconds, bucket
            FROM resolved
            WHERE NOT (kept_first IS NULL AND n = 1)
            ON CONFLICT DO NOTHING),
        mttr_periods AS (
            INSERT INTO report_mttr_periods AS m (grain, start, alertname, bucket, episodes, seconds)
            SELECT g.grain, date_bin(g.width, f.received_at, origin), f.alertname, f.bucket, count(*), sum(f.seconds)
            FROM firsts AS f CROSS JOIN (VALUES ('d'::"char", interval '1 day'), ('h', interval '1 hour')) AS g(grain, width)
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (grain, start, alertname, bucket) DO UPDATE SET
                episodes = m.episodes + excluded.episodes, seconds = m.seconds + excluded.seconds)
        INSERT INTO report_mttr_totals AS t (alertname, bucket, episodes, seconds)
        SELECT alertname, bucket, count(*), sum(seconds) FROM firsts GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (alertname, bucket) DO UPDATE SET
            episodes = t.episodes + excluded.episodes, seconds = t.seconds + excluded.seconds;
    END IF;
END $$;

-- Resends of rows stored in earlier batches: adds each row's new `duplicates` less the one it holds to its day
-- row and its alert's totals. Called by alert_history_store_batch BEFORE it writes the new counters
-- (same transaction), so the old ones come with the probe that finds the row's alert and hour.
CREATE FUNCTION alert_history_rollups_resends(p_counters jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    origin constant timestamptz := '2000-01-01T00:00:00Z';
BEGIN
    IF jsonb_array_length(p_counters) = 0 THEN
        RETURN;
    END IF;
    -- One primary key probe a row, as the counters' UPDATE makes (the LIMIT keeps it a probe: joined, the day's
    -- bounds or a misestimated batch size make the planner scan the whole partition instead).
    WITH deltas AS MATERIALIZED (
        SELECT e.fingerprint, e.received_at, (r->>1)::int - e.duplicates AS delta
        FROM jsonb_array_elements(p_counters) AS r
        CROSS JOIN LATERAL (SELECT x.fingerprint, x.received_at, x.duplicates FROM alert_events AS x
                            WHERE x.id = (r->>0)::bigint
                              AND x.received_at = to_timestamp((r->>3)::bigint / 1e3::float8) LIMIT 1) AS e
        WHERE (r->>1)::int <> e.duplicates),
    days AS (
        UPDATE report_alert_periods AS p SET duplicates = p.duplicates + x.delta
        FROM (SELECT date_bin('1 day', received_at, origin) AS start, fingerprint, sum(delta) AS delta
              FROM deltas GROUP BY 1, 2 ORDER BY 1, 2) AS x
        WHERE p.grain = 'd' AND p.start = x.start AND p.fingerprint = x.fingerprint)
    UPDATE report_alert_totals AS t SET duplicates = t.duplicates + x.delta
    FROM (SELECT fingerprint, sum(delta) AS delta FROM deltas GROUP BY 1 ORDER BY 1) AS x
    WHERE t.fingerprint = x.fingerprint;
END $$;

-- Rollups of everything received before p_before are dropped (retention drops those days of alert_events).
CREATE FUNCTION alert_history_rollups_drop_before(p_before timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE report_alert_totals AS t SET events = t.events - d.events, duplicates = t.duplicates - d.duplicates,
                                        flapping_events = t.flapping_events - d.flapping_events
    FROM (SELECT fingerprint, sum(events) AS events, sum(duplicates) AS duplicates,
                 sum(flapping_events) AS flapping_events
          FROM report_alert_periods WHERE grain = 'd' AND start < p_before GROUP BY 1) AS d
    WHERE t.fingerprint = d.fingerprint;
    DELETE FROM report_alert_totals WHERE events <= 0;
    UPDATE report_mttr_totals AS t SET episodes = t.episodes - d.episodes, seconds = t.seconds - d.seconds
    FROM (SELECT alertname, bucket, sum(episodes) AS episodes, sum(seconds) AS seconds
          FROM report_mttr_periods WHERE grain = 'd' AND start < p_before GROUP BY 1, 2) AS d
    WHERE t.alertname = d.alertname AND t.bucket = d.bucket;
    DELETE FROM report_mttr_totals WHERE episodes <= 0;
    DELETE FROM report_alert_periods WHERE grain = 'd' AND start < p_before;
    DELETE FROM report_mttr_periods WHERE grain IN ('h', 'd') AND start < p_before;
    DELETE FROM report_counts WHERE hour < p_before;
    DELETE FROM report_counts_minute WHERE minute < p_before;
    DELETE FROM report_episodes WHERE received_at < p_before;
    DELETE FROM report_resolve_repeats WHERE received_at < p_before;
END $$;

-- The rollups of the days [p_from, p_to) touches, derived again from alert_events (idempotent): for a backfill
-- and after a bulk load that bypassed the sink. The totals are summed again from all day rows.
CREATE FUNCTION alert_history_rollups_rebuild(p_from timestamptz, p_to timestamptz) RETURNS void
LANGUAGE plpgsql
-- A rebuild sorts the whole range's events by alert: larger sort runs than the default 4 MB (at 10M events the
-- sort is gigabytes; it ran over 20 minutes with the default).
SET work_mem = '256MB'
AS $$
DECLARE
    origin constant timestamptz := '2000-01-01T00:00:00Z';
    f timestamptz := date_bin('1 day', p_from, origin);
    t timestamptz := date_bin('1 day', p_to, origin);
BEGIN
    IF t < p_to THEN
        t := t + interval '1 day';
    END IF;
    -- Writers wait until it commits (a batch's increments on rows being derived again would be lost or collide).
    -- First the store function's first lock (its offsets rows, FOR UPDATE): a batch under way finishes, the next
    -- waits before it touches any rollup, whatever order its statements take the rollup tables in (the resends'
    -- part takes the alert rows first, a batch of new rows the counts first), so neither waits on the other forever.
    LOCK TABLE sink_offsets IN EXCLUSIVE MODE;
    LOCK TABLE report_counts, report_counts_minute, report_alert_periods, report_alert_totals, report_episodes,
               report_resolve_repeats, report_mttr_periods, report_mttr_totals IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM report_counts WHERE hour >= f AND hour < t;
    INSERT INTO report_counts (hour, status, severity, events)
    SELECT date_bin('1 hour', received_at, origin), status, severity, count(*)
    FROM alert_events WHERE received_at >= f AND received_at < t GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
    DELETE FROM report_counts_minute WHERE minute >= f AND minute < t;
    INSERT INTO report_counts_minute (minute, status, severity, events)
    SELECT date_bin('1 minute', received_at, origin), status, severity, count(*)
    FROM alert_events WHERE received_at >= f AND received_at < t GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

    DELETE FROM report_alert_periods WHERE grain = 'd' AND start >= f AND start < t;
    INSERT INTO report_alert_periods (grain, start, fingerprint, events, duplicates, flapping_events)
    SELECT 'd', date_bin('1 day', received_at, origin), fingerprint, count(*), sum(duplicates),
           count(*) FILTER (WHERE flapping)
    FROM alert_events WHERE received_at >= f AND received_at < t
    GROUP BY 2, 3 ORDER BY 2, 3;  -- a period's rows together on disk, as the sink writes them

    DELETE FROM report_episodes WHERE received_at >= f AND received_at < t;
    DELETE FROM report_resolve_repeats WHERE received_at >= f AND received_at < t;
    CREATE TEMP TABLE rollup_rebuild_resolved ON COMMIT DROP AS
    SELECT fingerprint, starts_at, received_at, alertname, seconds, alert_history_mttr_bucket(seconds) AS bucket,
           row_number() OVER (PARTITION BY fingerprint, starts_at ORDER BY received_at) AS n
    FROM (SELECT fingerprint, starts_at, received_at, coalesce(labels->>'alertname', '') AS alertname,
                 greatest(0, extract(epoch FROM
                     (CASE WHEN ends_at >= starts_at THEN ends_at ELSE received_at END) - starts_at)) AS seconds
          FROM alert_events WHERE status = 'resolved' AND received_at >= f AND received_at < t) AS r;
    -- An episode's first resolve in the range is its first unless one received before the range is kept.
    INSERT INTO report_episodes (fingerprint, starts_at, received_at, alertname, seconds, bucket)
    SELECT fingerprint, starts_at, received_at, alertname, seconds, bucket FROM rollup_rebuild_resolved
    WHERE n = 1
    ON CONFLICT (fingerprint, starts_at) DO NOTHING;
    INSERT INTO report_resolve_repeats (fingerprint, starts_at, received_at, first_received_at, alertname, seconds, bucket)
    SELECT r.fingerprint, r.starts_at, r.received_at, x.received_at, r.alertname, r.seconds, r.bucket
    FROM rollup_rebuild_resolved AS r
    JOIN report_episodes AS x ON x.fingerprint = r.fingerprint AND x.starts_at = r.starts_at
    WHERE x.received_at <> r.received_at;
    DROP TABLE rollup_rebuild_resolved;

    DELETE FROM report_mttr_periods WHERE grain IN ('h', 'd') AND start >= f AND start < t;
    INSERT INTO report_mttr_periods (grain, start, alertname, bucket, episodes, seconds)
    SELECT g.grain, date_bin(g.width, x.received_at, origin), x.alertname, x.bucket, count(*), sum(x.seconds)
    FROM report_episodes AS x CROSS JOIN (VALUES ('d'::"char", interval '1 day'), ('h', interval '1 hour')) AS g(grain, width)
    WHERE x.received_at >= f AND x.received_at < t
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4;

    DELETE FROM report_alert_totals;
    INSERT INTO report_alert_totals (fingerprint, events, duplicates, flapping_events)
    SELECT fingerprint, sum(events), sum(duplicates), sum(flapping_events)
    FROM report_alert_periods WHERE grain = 'd' GROUP BY 1;
    DELETE FROM report_mttr_totals;
    INSERT INTO report_mttr_totals (alertname, bucket, episodes, seconds)
    SELECT alertname, bucket, sum(episodes), sum(seconds) FROM report_mttr_periods WHERE grain = 'd' GROUP BY 1, 2;
END $$;

-- Migration 008's store function, plus the rollups' two lines: the resends' before the counters' UPDATE (it reads
-- the old counters), the new rows' before the offsets.
CREATE OR REPLACE FUNCTION alert_history_store_batch(
    p_topic text, p_partitions int[], p_next_offsets bigint[], p_first_partitions int[], p_first_offsets bigint[],
    p_events jsonb,    -- [id, fingerprint, status, labels, annotations, starts_us, ends_us, generator_url,
                       --  received_ms, decision, last_seen_ms, duplicates, flapping, severity, source, receiver]
    p_counters jsonb,  -- [id, duplicates, seen_ms, received_ms]
    p_alerts jsonb,    -- [fingerprint, labels, annotations, status, starts_ms, ends_us, generator_url, since_ms,
                       --  last_seen_ms, last_event_id, flapping, severity, episodes, receiver, resumes_ms]
    p_touches jsonb    -- [fingerprint, seen_ms]
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    stale text;
BEGIN
    PERFORM 1 FROM sink_offsets WHERE topic = p_topic AND partition = ANY(p_partitions) ORDER BY partition FOR UPDATE;
    SELECT format('%s[%s] already stored up to %s, batch starts at %s', p_topic, s.partition, s.next_offset, f.first)
      INTO stale
      FROM unnest(p_first_partitions, p_first_offsets) AS f(partition, first)
      JOIN sink_offsets s ON s.topic = p_topic AND s.partition = f.partition
     WHERE s.next_offset > f.first
     LIMIT 1;
    IF stale IS NOT NULL THEN
        RETURN stale;
    END IF;

    IF jsonb_array_length(p_events) > 0 THEN
        INSERT INTO alert_events (id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url,
                                  received_at, decision, last_seen_at, duplicates, flapping, severity, source, receiver)
        SELECT (r->>0)::bigint, r->>1, r->>2, r->3, r->4, alert_history_from_us((r->>5)::bigint),
               alert_history_from_us((r->>6)::bigint), r->>7, to_timestamp((r->>8)::bigint / 1e3::float8),
               r->>9, to_timestamp((r->>10)::bigint / 1e3::float8), (r->>11)::int, (r->>12)::bool, r->>13, r->>14,
               r->>15
        FROM jsonb_array_elements(p_events) AS r
        ON CONFLICT (id, received_at) DO NOTHING;
    END IF;

    PERFORM alert_history_rollups_resends(p_counters);
    IF jsonb_array_length(p_counters) > 0 THEN
        UPDATE alert_events AS e SET duplicates = u.duplicates, last_seen_at = u.last_seen_at
        FROM (SELECT (r->>0)::bigint AS id, (r->>1)::int AS duplicates,
                     to_timestamp((r->>2)::bigint / 1e3::float8) AS last_seen_at,
                     to_timestamp((r->>3)::bigint / 1e3::float8) AS received_at
              FROM jsonb_array_elements(p_counters) AS r) AS u
        WHERE e.id = u.id AND e.received_at = u.received_at;  -- received_at prunes to the row's partition
    END IF;

    -- `episodes` is the batch's count of episode openings; one fewer when its first event had no state to
    -- compare with and the row already holds that episode (`resumes` = the event's startsAt).
    IF jsonb_array_length(p_alerts) > 0 THEN
        INSERT INTO alerts AS a (fingerprint, labels, annotations, status, starts_at, ends_at, generator_url, since,
                                 last_seen_at, last_event_id, flapping, severity, episodes, receiver)
        SELECT b.fingerprint, labels, annotations, status, starts_at, ends_at, generator_url, since, last_seen_at,
               last_event_id, flapping, severity,
               episodes - CASE WHEN resumes IS NULL THEN 0 ELSE
                   (SELECT count(*) FROM alerts x WHERE x.fingerprint = b.fingerprint AND x.starts_at = resumes)::int
               END,
               receiver
        FROM (SELECT r->>0 AS fingerprint, r->1 AS labels, r->2 AS annotations, r->>3 AS status,
                     to_timestamp((r->>4)::bigint / 1e3::float8) AS starts_at,
                     alert_history_from_us((r->>5)::bigint) AS ends_at, r->>6 AS generator_url,
                     to_timestamp((r->>7)::bigint / 1e3::float8) AS since,
                     to_timestamp((r->>8)::bigint / 1e3::float8) AS last_seen_at, (r->>9)::bigint AS last_event_id,
                     (r->>10)::bool AS flapping, r->>11 AS severity, (r->>12)::int AS episodes, r->>13 AS receiver,
                     to_timestamp((r->>14)::bigint / 1e3::float8) AS resumes
              FROM jsonb_array_elements(p_alerts) AS r) AS b
        ON CONFLICT (fingerprint) DO UPDATE SET
            labels = excluded.labels, annotations = excluded.annotations, status = excluded.status,
            starts_at = excluded.starts_at, ends_at = excluded.ends_at, generator_url = excluded.generator_url,
            since = excluded.since, last_seen_at = excluded.last_seen_at, last_event_id = excluded.last_event_id,
            flapping = excluded.flapping, severity = excluded.severity, receiver = excluded.receiver,
            episodes = a.episodes + excluded.episodes;
    END IF;

    -- A resend changes nothing of its alert but when it was last seen (a HOT update: no index covers it).
    IF jsonb_array_length(p_touches) > 0 THEN
        UPDATE alerts AS a SET last_seen_at = to_timestamp(u.seen / 1e3::float8)
        FROM (SELECT r->>0 AS fingerprint, (r->>1)::bigint AS seen FROM jsonb_array_elements(p_touches) AS r) AS u
        WHERE a.fingerprint = u.fingerprint;
    END IF;

    PERFORM alert_history_rollups_batch(p_events);
    INSERT INTO sink_offsets (topic, partition, next_offset, updated_at)
    SELECT p_topic, p, o, now() FROM unnest(p_partitions, p_next_offsets) AS t(p, o)
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
    WHERE sink_offsets.next_offset < excluded.next_offset;
    RETURN NULL;
END $$;

-- Backfill what is already stored.
SELECT alert_history_rollups_rebuild(coalesce(min(received_at), now()), coalesce(max(received_at), now()) + interval '1 microsecond')
FROM alert_events;
