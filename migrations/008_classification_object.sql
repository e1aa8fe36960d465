-- An event's classification becomes the enrich agent's object, written onto the stored row after the history
-- path stored it: {category, severity (critical|warning|info|noise), confidence, reasoning, recommendations[],
-- source (rules|llm|cache), model}; NULL until the enrich agent has seen the event. The history path no longer
-- classifies. Rows stored before keep their rules' category, as a classification of source "rules".
-- `filter`: which filter rule decided whether the event is published, {rule, action}; NULL until decided.

ALTER TABLE alert_events ALTER COLUMN classification DROP NOT NULL;
ALTER TABLE alert_events ALTER COLUMN classification TYPE jsonb USING
    CASE WHEN classification IS NULL OR classification = '' THEN NULL ELSE jsonb_build_object(
        'category', classification,
        'severity', CASE WHEN classification = 'heartbeat' THEN 'noise'
                         WHEN severity IN ('critical', 'error') THEN 'critical'
                         WHEN severity = 'warning' THEN 'warning' ELSE 'info' END,
        'confidence', 0.5,
        'reasoning', 'built-in rules (classified before the enrich agent existed)',
        'recommendations', '[]'::jsonb,
        'source', 'rules',
        'model', NULL)
    END;
ALTER TABLE alert_events ADD COLUMN filter jsonb;

-- The event rows' layout loses `classification` (index 14): [id, fingerprint, status, labels, annotations,
-- starts_us, ends_us, generator_url, received_ms, decision, last_seen_ms, duplicates, flapping, severity, source,
-- receiver]. The rest is migration 006's function unchanged.
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

    INSERT INTO sink_offsets (topic, partition, next_offset, updated_at)
    SELECT p_topic, p, o, now() FROM unnest(p_partitions, p_next_offsets) AS t(p, o)
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
    WHERE sink_offsets.next_offset < excluded.next_offset;
    RETURN NULL;
END $$;
