-- The publish agent's record of each delivery, one row per (event, target): whether it reached the target
-- (delivered), went to the notify dead-letter topic (dead_lettered), or was not sent because a later event of
-- its fingerprint had already reached the target (superseded). A recorded success is never sent again.
CREATE TABLE deliveries (
    event_id         bigint      NOT NULL,  -- alert_events.id of the event delivered
    target           text        NOT NULL,  -- the target's name in the rules file
    fingerprint      text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    starts_at        timestamptz NOT NULL,
    outcome          text        NOT NULL CHECK (outcome IN ('delivered', 'dead_lettered', 'superseded')),
    attempts         integer     NOT NULL DEFAULT 0,  -- requests sent for it, over every try (replays too)
    dead_letters     integer     NOT NULL DEFAULT 0,  -- times it went to the dead-letter topic
    first_attempt_at timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz NOT NULL DEFAULT now(),
    error            text,                            -- the last failure's reason, redacted
    PRIMARY KEY (event_id, target)
);
-- A delivery's turn reads its fingerprint's earlier and newest deliveries to the same target.
CREATE INDEX deliveries_fingerprint ON deliveries (target, fingerprint, event_id);
