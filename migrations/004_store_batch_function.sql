-- One round trip per batch: the sink's statements (offsets locked and checked, new event rows, duplicate
-- counters, alert upserts, resend touches, next offsets) as one function called in one statement, which is
-- its own transaction. Before, a batch took eight round trips (BEGIN, six statements, COMMIT), each also
-- waiting for the worker's event loop to come back to it; at a few hundred events per batch those waits
-- were most of a batch's time.
--
-- Each group of arrays is one table's rows as columns. Message times are integer milliseconds (to_timestamp
-- of a float8 is exact to the microsecond for them). Returns NULL once stored, or why the batch is stale:
-- another worker stored offsets past where this batch begins, so nothing of it was written.

CREATE FUNCTION alert_history_store_batch(
    p_topic text, p_partitions int[], p_next_offsets bigint[], p_first_partitions int[], p_first_offsets bigint[],
    e_id bigint[], e_fingerprint text[], e_status text[], e_labels text[], e_annotations text[],
    e_starts_at timestamptz[], e_ends_at timestamptz[], e_generator_url text[], e_received_ms bigint[],
    e_decision text[], e_last_seen_ms bigint[], e_duplicates int[], e_flapping bool[], e_severity text[],
    e_classification text[], e_source text[], e_receiver text[],
    c_id bigint[], c_duplicates int[], c_seen_ms bigint[], c_received_ms bigint[],
    a_fingerprint text[], a_labels text[], a_annotations text[], a_status text[], a_starts_ms bigint[],
    a_ends_at timestamptz[], a_generator_url text[], a_since_ms bigint[], a_last_seen_ms bigint[],
    a_last_event_id bigint[], a_flapping bool[], a_severity text[], a_episodes int[], a_receiver text[],
    a_resumes_ms bigint[],
    t_fingerprint text[], t_seen_ms bigint[]
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

    IF cardinality(e_id) > 0 THEN
        INSERT INTO alert_events (id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url,
                                  received_at, decision, last_seen_at, duplicates, flapping, severity, classification,
                                  source, receiver)
        SELECT id, fingerprint, status, labels::jsonb, annotations::jsonb, starts_at, ends_at, generator_url,
               to_timestamp(received_ms / 1e3::float8), decision, to_timestamp(last_seen_ms / 1e3::float8),
               duplicates, flapping, severity, classification, source, receiver
        FROM unnest(e_id, e_fingerprint, e_status, e_labels, e_annotations, e_starts_at, e_ends_at, e_generator_url,
                    e_received_ms, e_decision, e_last_seen_ms, e_duplicates, e_flapping, e_severity,
                    e_classification, e_source, e_receiver)
             AS u(id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, received_ms,
                  decision, last_seen_ms, duplicates, flapping, severity, classification, source, receiver)
        ON CONFLICT (id, received_at) DO NOTHING;
    END IF;

    IF cardinality(c_id) > 0 THEN
        UPDATE alert_events AS e SET duplicates = u.duplicates, last_seen_at = u.last_seen_at
        FROM (SELECT id, duplicates, to_timestamp(seen / 1e3::float8) AS last_seen_at,
                     to_timestamp(received / 1e3::float8) AS received_at
              FROM unnest(c_id, c_duplicates, c_seen_ms, c_received_ms) AS t(id, duplicates, seen, received)) AS u
        WHERE e.id = u.id AND e.received_at = u.received_at;  -- received_at prunes to the row's partition
    END IF;

    -- `episodes` is the batch's count of episode openings; one fewer when its first event had no state to
    -- compare with and the row already holds that episode (`resumes` = the event's startsAt).
    IF cardinality(a_fingerprint) > 0 THEN
        INSERT INTO alerts AS a (fingerprint, labels, annotations, status, starts_at, ends_at, generator_url, since,
                                 last_seen_at, last_event_id, flapping, severity, episodes, receiver)
        SELECT b.fingerprint, labels::jsonb, annotations::jsonb, status, to_timestamp(starts_ms / 1e3::float8),
               ends_at, generator_url, to_timestamp(since_ms / 1e3::float8), to_timestamp(last_seen_ms / 1e3::float8),
               last_event_id, flapping, severity,
               episodes - CASE WHEN resumes_ms IS NULL THEN 0 ELSE
                   (SELECT count(*) FROM alerts x
                    WHERE x.fingerprint = b.fingerprint AND x.starts_at = to_timestamp(resumes_ms / 1e3::float8))::int
               END,
               receiver
        FROM unnest(a_fingerprint, a_labels, a_annotations, a_status, a_starts_ms, a_ends_at, a_generator_url,
                    a_since_ms, a_last_seen_ms, a_last_event_id, a_flapping, a_severity, a_episodes, a_receiver,
                    a_resumes_ms)
             AS b(fingerprint, labels, annotations, status, starts_ms, ends_at, generator_url, since_ms, last_seen_ms,
                  last_event_id, flapping, severity, episodes, receiver, resumes_ms)
        ON CONFLICT (fingerprint) DO UPDATE SET
            labels = excluded.labels, annotations = excluded.annotations, status = excluded.status,
            starts_at = excluded.starts_at, ends_at = excluded.ends_at, generator_url = excluded.generator_url,
            since = excluded.since, last_seen_at = excluded.last_seen_at, last_event_id = excluded.last_event_id,
            flapping = excluded.flapping, severity = excluded.severity, receiver = excluded.receiver,
            episodes = a.episodes + excluded.episodes;
    END IF;

    -- A resend changes nothing of its alert but when it was last seen (a HOT update: no index covers it).
    IF cardinality(t_fingerprint) > 0 THEN
        UPDATE alerts AS a SET last_seen_at = to_timestamp(u.seen / 1e3::float8)
        FROM unnest(t_fingerprint, t_seen_ms) AS u(fingerprint, seen)
        WHERE a.fingerprint = u.fingerprint;
    END IF;

    INSERT INTO sink_offsets (topic, partition, next_offset, updated_at)
    SELECT p_topic, p, o, now() FROM unnest(p_partitions, p_next_offsets) AS t(p, o)
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
    WHERE sink_offsets.next_offset < excluded.next_offset;
    RETURN NULL;
END $$;
