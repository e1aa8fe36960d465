-- Time travel's index, again: a btree on a "slot" instead of SP-GiST on the range (docs/performance.md, 2026-12-03,
-- "episodes' index at 10M events"). SP-GiST's range quad tree splits a full leaf around its median; episodes
-- arriving in time order (the sink appends, the rebuild inserted ORDER BY starts_at) all fall in the same
-- quadrant of each new node, so the tree grows a level every few hundred rows and each insert walks all of them:
-- ~40 µs an episode at 50,000 rows, ~250 at 200,000, ~1,000 episodes/s when rebuilding 5M. A btree stays
-- logarithmic in any order.
--
-- The slot: an episode of length L (its exact end; open ones have none) gets the level k, the smallest with
-- L <= 5 min * 2^k, and the bucket floor(startsAt / (5 min * 2^k)). An episode firing at T started in
-- (T - 5 min * 2^k, T], so its bucket is T's bucket at its level or the one before: "firing at T" is 82 btree
-- lookups (levels 0 to 40, two buckets each), alert_history_episode_slots(T), plus the open episodes (no slot).
-- The candidates read are a few times the episodes firing (two buckets, each up to twice the episodes' length).
-- The key moves only when an episode's length crosses a power of two, so a resend moving endsAt is a HOT update
-- far more often than with 013's 5-minute rounding. PL/pgSQL in bigint µs since the epoch: exact (numeric division
-- rounds at the last digits) and ~4 µs a row; the same as SQL functions with subqueries cost ~130 µs a row.
CREATE FUNCTION alert_history_episode_slot(s timestamptz, e timestamptz) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    len bigint;
    k int := 0;
    s_us bigint;
    w bigint;
BEGIN
    IF e <= s OR NOT isfinite(e) OR NOT isfinite(s) THEN
        RETURN NULL;
    END IF;
    len := extract(epoch FROM e - s) * 1000000;
    WHILE k < 40 AND (300000000::bigint << k) < len LOOP
        k := k + 1;
    END LOOP;
    s_us := extract(epoch FROM s) * 1000000;
    w := 300000000::bigint << k;
    -- level * 2^40 + 2^39 + bucket (floored: a bucket before 1970 is negative)
    RETURN k * 1099511627776 + 549755813888 + CASE WHEN s_us >= 0 THEN s_us / w ELSE -((-s_us - 1) / w) - 1 END;
END $$;

-- The slots an episode firing at t can have (see above): at each level k, t's bucket (element 2k + 1) and the one
-- before (2k + 2).
CREATE FUNCTION alert_history_episode_slots(t timestamptz) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    t_us bigint := extract(epoch FROM t) * 1000000;
    w bigint;
    b bigint;
    slots bigint[] := '{}';
BEGIN
    FOR k IN 0..40 LOOP
        w := 300000000::bigint << k;
        b := k * 1099511627776 + 549755813888 + CASE WHEN t_us >= 0 THEN t_us / w ELSE -((-t_us - 1) / w) - 1 END;
        slots := slots || b || b - 1;
    END LOOP;
    RETURN slots;
END $$;

SET LOCAL maintenance_work_mem = '512MB';
-- The range column goes, and with it its SP-GiST index and the index of the empty episodes (before the rewrite
-- below, which would otherwise rebuild SP-GiST row by row).
ALTER TABLE alert_episodes DROP COLUMN active;
ALTER TABLE alert_episodes
    ADD COLUMN slot bigint GENERATED ALWAYS AS (alert_history_episode_slot(starts_at, ends_at)) STORED;
CREATE INDEX alert_episodes_slot ON alert_episodes (slot);
-- Time travel asks for 82 slots, of which only the levels in use hold rows (a few). Estimated from the true number
-- of distinct slots (a few hundred per level in a month), the 82 looked like a third of the table and the planner
-- scanned it all (1.5 s instead of 0.27 at 10M events, docs/performance.md): ANALYZE takes this instead, a hundred
-- episodes a slot, so the 82 look like ~8,000 rows whatever the table's size.
ALTER TABLE alert_episodes ALTER COLUMN slot SET (n_distinct = -0.01);
-- Episodes without a slot: the open ones (time travel), the empty ones (retention) and any with an infinite time.
CREATE INDEX alert_episodes_unslotted ON alert_episodes (starts_at) WHERE slot IS NULL;

-- Retention: the episodes that ended before p_horizon (by 013's rule: the end rounded up to 5 minutes), and the
-- empty ones that started before it. At each level the episodes of the buckets after p_horizon's started after
-- it; the earlier ones are read through the slot index and their end checked.
CREATE FUNCTION alert_history_episodes_drop_before(p_horizon timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    m bigint;
    upto bigint[] := alert_history_episode_slots(p_horizon);
BEGIN
    DELETE FROM alert_episodes AS e
     USING generate_series(0, 40) AS k
     WHERE e.slot >= k * 1099511627776 AND e.slot <= upto[2 * k + 1]
       AND alert_history_ceil_5min(e.ends_at) <= p_horizon;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM alert_episodes WHERE slot IS NULL AND ends_at <= starts_at AND starts_at < p_horizon;
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN n + m;
END $$;

-- 013's rebuild, with a bulk path: when the range holds a large part of the table (the migration's backfill below, the
-- seed's, any rebuild of everything), the secondary indexes go first and are built again after the inserts
-- (a sorted build instead of one insert per row and index: minutes instead of hours at 5M episodes). That holds
-- an exclusive lock on alert_episodes until the transaction ends: the sink and time travel wait.
CREATE OR REPLACE FUNCTION alert_history_episodes_rebuild(p_from timestamptz, p_to timestamptz) RETURNS bigint
LANGUAGE plpgsql
-- A rebuild sorts the whole range's events by alert: larger sort runs than the default 4 MB (at 10M events the
-- sort is gigabytes; it ran over 20 minutes with the default). The index builds sort in maintenance_work_mem.
SET work_mem = '256MB'
SET maintenance_work_mem = '512MB'
AS $$
DECLARE
    n bigint;
    kept bigint;
    replaced bigint := 0;
    defs text[] := '{}';
    def text;
    idx record;
BEGIN
    SELECT count(*) INTO kept FROM alert_episodes WHERE NOT (starts_at >= p_from AND starts_at < p_to);
    IF kept = 0 THEN
        TRUNCATE alert_episodes;
    ELSE
        DELETE FROM alert_episodes WHERE starts_at >= p_from AND starts_at < p_to;
        GET DIAGNOSTICS replaced = ROW_COUNT;
    END IF;
    IF replaced * 4 >= kept THEN  -- bulk: the range held a fifth of the table or more (all of it when kept = 0)
        FOR idx IN SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
                     FROM pg_index AS i
                    WHERE i.indrelid = 'alert_episodes'::regclass
                      AND NOT EXISTS (SELECT FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
        LOOP
            defs := defs || idx.def;
            EXECUTE format('DROP INDEX %s', idx.name);
        END LOOP;
    END IF;
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
    FOREACH def IN ARRAY defs LOOP
        EXECUTE def;
    END LOOP;
    IF cardinality(defs) > 0 THEN
        ANALYZE alert_episodes;
    END IF;
    RETURN n;
END $$;

-- The backfill, moved here from 013 (which now leaves the table empty on a database it upgrades): on a database
-- that applied 013 before, the table is already kept by the sink and is left as it is.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM alert_episodes) THEN
        PERFORM alert_history_episodes_rebuild('-infinity', 'infinity');
    END IF;
END $$;
