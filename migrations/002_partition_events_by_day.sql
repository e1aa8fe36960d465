-- alert_events partitioned by day of received_at: time-range queries touch only their days, and
-- retention drops whole partitions (no row-by-row DELETE, no bloat, no vacuum debt).
-- Paging moves from the commit-ordered `seq` to the keyset (received_at, id): both immutable, so a
-- cursor never shows a row twice nor skips one, and the key leads with the partition column.

-- Creates the day's partition when missing. Called by the sink before it writes a new day, and
-- ahead of time by the maintenance task, so steady-state writes never wait on DDL.
CREATE FUNCTION alert_events_ensure_partition(day date) RETURNS boolean
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
        'CREATE TABLE %I PARTITION OF alert_events FOR VALUES FROM (%L) TO (%L)',
        name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC'
    );
    RETURN true;
END $$;

ALTER TABLE alert_events RENAME TO alert_events_001;
ALTER INDEX alert_events_pkey RENAME TO alert_events_001_pkey;
ALTER INDEX alert_events_seq_key RENAME TO alert_events_001_seq_key;
ALTER INDEX alert_events_received_at RENAME TO alert_events_001_received_at;
ALTER INDEX alert_events_fingerprint RENAME TO alert_events_001_fingerprint;
ALTER INDEX alert_events_labels RENAME TO alert_events_001_labels;

CREATE TABLE alert_events (
    id             bigint      NOT NULL,     -- topic code << 50 | partition << 40 | offset of its first message
    fingerprint    text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels         jsonb       NOT NULL,
    annotations    jsonb       NOT NULL DEFAULT '{}',
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz,
    generator_url  text        NOT NULL DEFAULT '',
    received_at    timestamptz NOT NULL,     -- broker time of the first message: the partition key
    last_seen_at   timestamptz NOT NULL,
    duplicates     integer     NOT NULL DEFAULT 0,
    flapping       boolean     NOT NULL DEFAULT false,
    severity       text        NOT NULL,
    classification text        NOT NULL,
    decision       text        NOT NULL,     -- first_seen | transition | resighted
    source         text,
    receiver       text,
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);

-- History pages: newest first within a time range (and the keyset cursor).
CREATE INDEX alert_events_received_at ON alert_events (received_at DESC, id DESC);
-- Per-alert timelines.
CREATE INDEX alert_events_fingerprint ON alert_events (fingerprint, received_at);
-- Label matchers: equality matchers become containment (@>), which this index serves.
CREATE INDEX alert_events_labels ON alert_events USING gin (labels jsonb_path_ops);

SELECT alert_events_ensure_partition(d::date)
FROM (
    SELECT generate_series(min(received_at AT TIME ZONE 'UTC')::date, max(received_at AT TIME ZONE 'UTC')::date,
                           interval '1 day') AS d
    FROM alert_events_001
) AS days;
SELECT alert_events_ensure_partition((now() AT TIME ZONE 'UTC')::date + k) FROM generate_series(0, 1) AS k;

INSERT INTO alert_events (id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url,
                          received_at, last_seen_at, duplicates, flapping, severity, classification, decision,
                          source, receiver)
SELECT id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, received_at, last_seen_at,
       duplicates, flapping, severity, classification, decision, source, receiver
FROM alert_events_001;

DROP TABLE alert_events_001;
