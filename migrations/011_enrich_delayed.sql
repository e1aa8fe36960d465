-- Firing events a filter rule delays (action delay, `for`): published when `release_at` comes if no resolve of the
-- fingerprint came first. Durable, so a worker restart neither loses a delay nor sends one twice; any worker's
-- timer releases due rows (FOR UPDATE SKIP LOCKED: one at a time), and a resolve's batch deletes the rows it cancels.
-- `message`: the event with its classification and the filter decision, shaped by the mode at release.
CREATE TABLE enrich_delayed (
    topic        text        NOT NULL,  -- the pipeline's topic: pipelines sharing a database release their own
    event_id     bigint      NOT NULL,  -- alert_events.id of the delayed firing
    fingerprint  text        NOT NULL,
    received_at  timestamptz NOT NULL,  -- the row's, to find it in its partition when the outcome is recorded
    release_at   timestamptz NOT NULL,
    message      jsonb       NOT NULL,
    PRIMARY KEY (topic, event_id)
);
CREATE INDEX enrich_delayed_due ON enrich_delayed (topic, release_at);
CREATE INDEX enrich_delayed_fingerprint ON enrich_delayed (topic, fingerprint);
