-- Most of the stream is resends: each updates its event row (duplicates, last_seen_at) and its alerts row
-- (last_seen_at). Such an update is HOT (no new index entries; old versions pruned within the page) only
-- when no index covers a changed column and the page has room. alerts_status covered last_seen_at and pages
-- were filled to 100%, so every resend added entries to every index of alerts, the GIN label index included.
-- (Measured before and after: docs/performance.md.)

-- The Alertmanager v2 list reads the firing alerts by startsAt. Retention's hourly DELETE by last_seen_at
-- now scans the table: once an hour rather than an index entry per resend.
DROP INDEX alerts_status;
CREATE INDEX alerts_firing ON alerts (starts_at, fingerprint) WHERE status = 'firing';
ALTER TABLE alerts SET (fillfactor = 50);

-- A partitioned table holds no storage parameters: each day's partition gets its own, the days to come
-- through the function, the days already there below (for the pages written from now on).
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
        'CREATE TABLE %I PARTITION OF alert_events FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 70)',
        name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC'
    );
    RETURN true;
END $$;

DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'alert_events'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 70)', part);
    END LOOP;
END $$;
