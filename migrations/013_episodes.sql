-- Time travel: each alert's episodes as intervals, so "what was firing at T" is one index lookup.
-- An episode is one (fingerprint, startsAt); it was firing over [startsAt, end): end is its resolve's endsAt,
-- else the endsAt of its last firing message (Alertmanager's expiry), NULL (open) when that has none. The
-- alert's own times decide, not when we received them. startsAt is kept to the millisecond, the precision the
-- dedup compares at. The sink keeps this table in the batch's transaction (alert_history_episodes_batch);
-- alert_history_episodes_rebuild derives it from alert_events.
-- Immutable indeed: minutes and microseconds added to a timestamptz do not depend on the time zone.
CREATE FUNCTION alert_history_ceil_5min(t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_bin('5 minutes', t - interval '1 microsecond', timestamptz 'epoch') + interval '5 minutes'
$$;

CREATE TABLE alert_episodes (
    fingerprint       text        NOT NULL,
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz,
    resolved          boolean     NOT NULL,   -- the end is a resolve's: a later firing copy never moves it
    -- [startsAt, end rounded up to 5 minutes): the index's key, so a resend moving endsAt within those 5 minutes is
    -- a HOT update (no index entry). Readers check ends_at for the exact end.
    active            tstzrange   GENERATED ALWAYS AS (
                          CASE WHEN ends_at IS NULL THEN tstzrange(starts_at, NULL)
                               WHEN ends_at <= starts_at THEN 'empty'::tstzrange
                               ELSE tstzrange(starts_at, alert_history_ceil_5min(ends_at)) END
                      ) STORED,
    -- What an Alertmanager client shows, from the episode's last message: no join at read time.
    labels            jsonb       NOT NULL,
    annotations       jsonb       NOT NULL DEFAULT '{}',
    generator_url     text        NOT NULL DEFAULT '',
    receiver          text,
    updated_at        timestamptz NOT NULL,   -- when its last message that changed it was received
    -- The episode's first stored row (its firing row when one is stored): /history?at= returns that event.
    event_id          bigint      NOT NULL,
    event_received_at timestamptz NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
) WITH (fillfactor = 70);  -- room on the page for those HOT updates
-- SP-GiST, not GiST: its inserts cost a fraction. Retention finds the ended episodes through it too.
CREATE INDEX alert_episodes_active ON alert_episodes USING spgist (active);
CREATE INDEX alert_episodes_labels ON alert_episodes USING gin (labels jsonb_path_ops);
-- The empty episodes (ended before they started), which the range index never returns, for retention.
CREATE INDEX alert_episodes_empty ON alert_episodes (starts_at) WHERE isempty(active);

-- The batch's episodes, collapsed by the sink (sinks/postgres.py, _span): element 15 of each p_alerts row,
-- [starts_ms, resolved, end_us, first row's id, its received_ms, annotations, generator_url, receiver] per episode
-- its messages touched. A resolve's end stands against later firing copies; otherwise the last message's end.
CREATE FUNCTION alert_history_episodes_batch(p_alerts jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_episodes AS e (fingerprint, starts_at, ends_at, resolved, labels, annotations, generator_url,
                                     receiver, updated_at, event_id, event_received_at)
    SELECT r->>0, alert_history_from_us((s->>0)::bigint * 1000), alert_history_from_us((s->>2)::bigint),
           (s->>1)::bool, r->1, s->5, s->>6, s->>7, to_timestamp((r->>8)::bigint / 1e3::float8), (s->>3)::bigint,
           to_timestamp((s->>4)::bigint / 1e3::float8)
    FROM jsonb_array_elements(p_alerts) AS r
    CROSS JOIN LATERAL jsonb_array_elements(CASE jsonb_typeof(r->15) WHEN 'array' THEN r->15 ELSE '[]' END) AS s
    ORDER BY 1, 2  -- one lock order for concurrent writers
    ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
        ends_at = CASE WHEN excluded.resolved OR NOT e.resolved THEN excluded.ends_at ELSE e.ends_at END,
        resolved = e.resolved OR excluded.resolved,
        labels = excluded.labels, annotations = excluded.annotations, generator_url = excluded.generator_url,
        receiver = excluded.receiver, updated_at = greatest(e.updated_at, excluded.updated_at)
    -- A resend that changes nothing of the episode writes nothing.
    WHERE (excluded.resolved OR NOT e.resolved) AND e.ends_at IS DISTINCT FROM excluded.ends_at
       OR excluded.resolved AND NOT e.resolved
       OR e.annotations IS DISTINCT FROM excluded.annotations OR e.labels IS DISTINCT FROM excluded.labels
       OR e.generator_url IS DISTINCT FROM excluded.generator_url OR e.receiver IS DISTINCT FROM excluded.receiver;
END $$;

-- The episodes starting in [p_from, p_to) again from alert_events (idempotent). A resend's endsAt is kept on the
-- row only for each alert's current episode (the alerts row holds its last message); an earlier episode that
-- expired ends at the endsAt of its last stored row.
CREATE FUNCTION alert_history_episodes_rebuild(p_from timestamptz, p_to timestamptz) RETURNS bigint
LANGUAGE plpgsql
-- A rebuild sorts the whole range's events by alert: larger sort runs than the default 4 MB (at 10M events the
-- sort is gigabytes; it ran over 20 minutes with the default).
SET work_mem = '256MB'
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM alert_episodes WHERE starts_at >= p_from AND starts_at < p_to;
    INSERT INTO alert_episodes (fingerprint, starts_at, ends_at, resolved, labels, annotations, generator_url,
                                receiver, updated_at, event_id, event_received_at)
    SELECT fingerprint, starts_at,
           CASE WHEN resolved THEN resolved_end ELSE firing_end END, resolved, labels, annotations, generator_url,
           receiver, updated_at, event_id, event_received_at
    FROM (SELECT fingerprint, date_trunc('milliseconds', starts_at) AS starts_at,
                 bool_or(status = 'resolved') AS resolved,
                 (array_agg(coalesce(ends_at, received_at) ORDER BY received_at DESC, id DESC)
                     FILTER (WHERE status = 'resolved'))[1] AS resolved_end,
                 (array_agg(ends_at ORDER BY received_at DESC, id DESC) FILTER (WHERE status = 'firing'))[1]
                     AS firing_end,
                 (array_agg(labels ORDER BY received_at DESC, id DESC))[1] AS labels,
                 (array_agg(annotations ORDER BY received_at DESC, id DESC))[1] AS annotations,
                 (array_agg(generator_url ORDER BY received_at DESC, id DESC))[1] AS generator_url,
                 (array_agg(receiver ORDER BY received_at DESC, id DESC))[1] AS receiver,
                 max(received_at) AS updated_at,
                 (array_agg(id ORDER BY status <> 'firing', received_at, id))[1] AS event_id,
                 (array_agg(received_at ORDER BY status <> 'firing', received_at, id))[1] AS event_received_at
          FROM alert_events
          WHERE date_trunc('milliseconds', starts_at) >= p_from AND date_trunc('milliseconds', starts_at) < p_to
          GROUP BY 1, 2) AS ep
    -- In time order, as the sink appends them: the episodes firing at one moment share few pages.
    ORDER BY starts_at;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- Each alert's current episode: its last message, resends included, as the sink saw it.
    UPDATE alert_episodes AS e
       SET ends_at = CASE WHEN a.status = 'resolved' THEN coalesce(a.ends_at, a.since)
                          WHEN e.resolved THEN e.ends_at ELSE a.ends_at END,
           resolved = e.resolved OR a.status = 'resolved',
           labels = a.labels, annotations = a.annotations, generator_url = a.generator_url, receiver = a.receiver,
           updated_at = greatest(e.updated_at, a.last_seen_at)
      FROM alerts AS a
     WHERE e.fingerprint = a.fingerprint
       AND e.starts_at = date_trunc('milliseconds', a.starts_at + interval '0.5 milliseconds')
       AND e.starts_at >= p_from AND e.starts_at < p_to;
    RETURN n;
END $$;

-- The backfill of an existing history is migration 014's (with this function's index, SP-GiST, it took hours at
-- 10M events); a database that applied this file before 014 existed backfilled here.

-- Migration 012's function (008's with the rollups) with the episodes kept in the same transaction (one added line).
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

    PERFORM alert_history_rollups_resends(p_counters);  -- migration 012's: before the counters change

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

    PERFORM alert_history_rollups_batch(p_events);  -- migration 012's
    PERFORM alert_history_episodes_batch(p_alerts);

    INSERT INTO sink_offsets (topic, partition, next_offset, updated_at)
    SELECT p_topic, p, o, now() FROM unnest(p_partitions, p_next_offsets) AS t(p, o)
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
    WHERE sink_offsets.next_offset < excluded.next_offset;
    RETURN NULL;
END $$;
