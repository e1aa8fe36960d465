-- Messages whose rows PostgreSQL refused for their data (SQLSTATE classes 22 and 23) although they passed
-- validation: each went to the dead-letter topic, and every later decision of the pipeline skips it, replays
-- after a restart included, as if it had never been on the topic. Kept for RETENTION_DAYS.
CREATE TABLE refused_messages (
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,
    reason     text        NOT NULL,
    refused_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
