-- PostgreSQL's CPU per stored alert (issue 19): the store path's costs cut where the answers stay the same.
-- Measured in docs/performance.md (2026-12-03, PostgreSQL's CPU per alert).
--
-- 1. A resend's counters and their rollups in one statement, one probe a row. The sink sends with each counter the
--    `duplicates` its row held before the batch, as the worker's state says (element 4; null when it does not
--    know). The UPDATE takes the rows whose stored value is that one and returns their difference; only the others
--    (a state that does not match what is stored, a caller that does not send it) are probed for their old value
--    first, as migration 012's alert_history_rollups_resends does. So the rollups stay exact whatever the sink
--    sends, and the common resend costs one probe instead of two.
-- 2. New days' partitions of alert_events leave 60% of each page free (fillfactor 40, was 70): the enrich agent
--    writes each new row's classification and filter (~280 bytes) soon after it is stored, and every resend its
--    counters; with 70 a third of those updates found no room on the row's page and were not HOT (a new entry
--    in each of the five indexes, the labels' GIN among them). The rows end at about twice their stored size, so
--    the table grows ~10% for it.

CREATE FUNCTION alert_history_counters_batch(p_counters jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    origin constant timestamptz := '2000-01-01T00:00:00Z';
BEGIN
    IF jsonb_array_length(p_counters) = 0 THEN
        RETURN;
    END IF;
    WITH known AS (
        -- received_at prunes to the row's partition; the stored counter is checked on the row the probe finds.
        UPDATE alert_events AS e SET duplicates = u.duplicates, last_seen_at = u.last_seen_at
        FROM (SELECT (r->>0)::bigint AS id, (r->>1)::int AS duplicates, (r->>4)::int AS stored,
                     to_timestamp((r->>2)::bigint / 1e3::float8) AS last_seen_at,
                     to_timestamp((r->>3)::bigint / 1e3::float8) AS received_at
              FROM jsonb_array_elements(p_counters) AS r WHERE r->>4 IS NOT NULL) AS u
        WHERE e.id = u.id AND e.received_at = u.received_at AND e.duplicates = u.stored
        RETURNING e.id, e.fingerprint, e.received_at, u.duplicates - u.stored AS delta),
    -- The rest: their old counter read first (the statement's snapshot: before any of its updates). A LATERAL
    -- LIMIT 1 keeps each a primary key probe whatever the partition's statistics (migration 012).
    todo AS MATERIALIZED (
        SELECT (r->>0)::bigint AS id, (r->>1)::int AS duplicates,
               to_timestamp((r->>2)::bigint / 1e3::float8) AS last_seen_at,
               to_timestamp((r->>3)::bigint / 1e3::float8) AS received_at
        FROM jsonb_array_elements(p_counters) AS r
        WHERE NOT EXISTS (SELECT 1 FROM known AS k WHERE k.id = (r->>0)::bigint)),
    rest AS MATERIALIZED (
        SELECT x.id, x.received_at, x.fingerprint, u.duplicates, u.last_seen_at, u.duplicates - x.duplicates AS delta
        FROM todo AS u
        CROSS JOIN LATERAL (SELECT e.id, e.received_at, e.fingerprint, e.duplicates FROM alert_events AS e
                            WHERE e.id = u.id AND e.received_at = u.received_at LIMIT 1) AS x),
    rest_rows AS (
        UPDATE alert_events AS e SET duplicates = r.duplicates, last_seen_at = r.last_seen_at
        FROM rest AS r WHERE e.id = r.id AND e.received_at = r.received_at),
    deltas AS MATERIALIZED (
        SELECT fingerprint, received_at, delta FROM known WHERE delta <> 0
        UNION ALL
        SELECT fingerprint, received_at, delta FROM rest WHERE delta <> 0),
    days AS (
        UPDATE report_alert_periods AS p SET duplicates = p.duplicates + x.delta
        FROM (SELECT date_bin('1 day', received_at, origin) AS start, fingerprint, sum(delta) AS delta
              FROM deltas GROUP BY 1, 2 ORDER BY 1, 2) AS x
        WHERE p.grain = 'd' AND p.start = x.start AND p.fingerprint = x.fingerprint)
    UPDATE report_alert_totals AS t SET duplicates = t.duplicates + x.delta
    FROM (SELECT fingerprint, sum(delta) AS delta FROM deltas GROUP BY 1 ORDER BY 1) AS x
    WHERE t.fingerprint = x.fingerprint;
END $$;

-- Migration 003's function with the new fill factor; the partitions there already take it for their pages to come.
CREATE OR REPLACE FUNCTION alert_events_ensure_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    name text := format('alert_events_%s', to_char(day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Two workers may reach a new day together: one creates, the other waits here and then sees it.
    PERFORM pg_advisory_xact_lock(hashtext(name));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF alert_events FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 40)',
        name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC'
    );
    RETURN true;
END $$;

DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'alert_events'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 40)', part);
    END LOOP;
END $$;

-- Migration 013's store function with the counters' two steps (012's resends' rollups, then the UPDATE) replaced by
-- the one call above. Nothing else changed.
CREATE OR REPLACE FUNCTION alert_history_store_batch(
    p_topic text, p_partitions int[], p_next_offsets bigint[], p_first_partitions int[], p_first_offsets bigint[],
    p_events jsonb,    -- [id, fingerprint, status, labels, annotations, starts_us, ends_us, generator_url,
                       --  received_ms, decision, last_seen_ms, duplicates, flapping, severity, source, receiver]
    p_counters jsonb,  -- [id, duplicates, seen_ms, received_ms, stored_duplicates (null: not known)]
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

    PERFORM alert_history_counters_batch(p_counters);  -- the counters and their rollups (this migration's)

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

    PERFORM alert_history_rollups_batch(p_events);  -- migration 012's
    PERFORM alert_history_episodes_batch(p_alerts);

    INSERT INTO sink_offsets (topic, partition, next_offset, updated_at)
    SELECT p_topic, p, o, now() FROM unnest(p_partitions, p_next_offsets) AS t(p, o)
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
    WHERE sink_offsets.next_offset < excluded.next_offset;
    RETURN NULL;
END $$;
