-- alert-history: append-only event history, current state per alert, and sink bookkeeping.

-- Topics this database has read from: their code is part of every event id, so several pipelines
-- (topics) can share one database without their (partition, offset) ids colliding.
CREATE TABLE topics (
    code smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY CHECK (code < 8192),
    name text NOT NULL UNIQUE
);

-- One row per event: (fingerprint, status, startsAt) as first seen; resends only grow its counters.
CREATE TABLE alert_events (
    id             bigint PRIMARY KEY,       -- topic code << 50 | partition << 40 | offset of its first message
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- commit-ordered: newest-first paging
    fingerprint    text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels         jsonb       NOT NULL,
    annotations    jsonb       NOT NULL DEFAULT '{}',
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz,
    generator_url  text        NOT NULL DEFAULT '',
    received_at    timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    duplicates     integer     NOT NULL DEFAULT 0,
    flapping       boolean     NOT NULL DEFAULT false,
    severity       text        NOT NULL,
    classification text        NOT NULL,
    decision       text        NOT NULL,     -- first_seen | transition | resighted
    source         text,
    receiver       text
);
CREATE INDEX alert_events_received_at ON alert_events (received_at DESC, seq DESC);
CREATE INDEX alert_events_fingerprint ON alert_events (fingerprint, received_at);
CREATE INDEX alert_events_labels ON alert_events USING gin (labels jsonb_path_ops);

-- Current state of each alert (one row per fingerprint).
CREATE TABLE alerts (
    fingerprint    text PRIMARY KEY,
    labels         jsonb       NOT NULL,
    annotations    jsonb       NOT NULL DEFAULT '{}',
    status         text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz,
    generator_url  text        NOT NULL DEFAULT '',
    since          timestamptz NOT NULL,     -- when the current status was first seen
    last_seen_at   timestamptz NOT NULL,
    last_event_id  bigint      NOT NULL,
    episodes       integer     NOT NULL DEFAULT 0,
    flapping       boolean     NOT NULL DEFAULT false,
    severity       text        NOT NULL,
    receiver       text
);
CREATE INDEX alerts_status ON alerts (status, last_seen_at DESC);
CREATE INDEX alerts_labels ON alerts USING gin (labels jsonb_path_ops);

-- Next Kafka offset whose effect is not yet in this database, per partition. Written in the same
-- transaction as the rows: replays below it are skipped, which makes at-least-once exactly-once here.
CREATE TABLE sink_offsets (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
