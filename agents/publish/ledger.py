"""The deliveries table (migration 010): what each delivery's turn reads, and its outcome once it has one.

Every statement is retried while PostgreSQL is unreachable, to a deadline; past it the caller cannot know what
was sent, so it stops (the agent exits, and a restart resends only what has no recorded success).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from agents.publish.decider import Key, Outcome, Past, Recorded
from app.retry import retry
from sinks.postgres import is_retryable, open_pool

DEADLINE_S = 120.0
STATEMENT_TIMEOUT_S = 30.0

PAST = """
SELECT (SELECT outcome FROM deliveries WHERE event_id = $1 AND target = $2) AS own,
       (SELECT max(event_id) FROM deliveries
         WHERE target = $2 AND fingerprint = $3 AND event_id BETWEEN $4 AND $5 AND outcome = 'delivered')
           AS newest_delivered,
       p.event_id, p.status, p.starts_at, p.outcome
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT event_id, status, starts_at, outcome FROM deliveries
     WHERE target = $2 AND fingerprint = $3 AND event_id >= $4 AND event_id < $1
     ORDER BY event_id DESC LIMIT 1) AS p ON true
"""

# A success is final: a later try (a repeat racing it, a replay) never overwrites it.
RECORD = """
INSERT INTO deliveries AS d (event_id, target, fingerprint, status, starts_at, outcome, attempts, dead_letters,
                             first_attempt_at, finished_at, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), $10)
ON CONFLICT (event_id, target) DO UPDATE SET
    outcome = excluded.outcome, attempts = d.attempts + excluded.attempts,
    dead_letters = d.dead_letters + excluded.dead_letters, finished_at = now(), error = excluded.error
WHERE d.outcome <> 'delivered'
"""


class Ledger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, database_url: str, size: int = 4) -> Ledger:
        return cls(await open_pool(database_url, size, command_timeout=STATEMENT_TIMEOUT_S))

    async def close(self) -> None:
        await self.pool.close()

    async def past(self, key: Key) -> Past:
        lo, hi = key.pipeline_ids

        async def read() -> asyncpg.Record:
            return await self.pool.fetchrow(PAST, key.event_id, key.target, key.fingerprint, lo, hi)

        row = await retry("read deliveries from PostgreSQL", read, retryable=is_retryable, deadline_s=DEADLINE_S)
        previous = None
        if row["event_id"] is not None:
            previous = Recorded(row["event_id"], row["status"], row["starts_at"], Outcome(row["outcome"]))
        own = Outcome(row["own"]) if row["own"] is not None else None
        return Past(own, row["newest_delivered"], previous)

    async def record(
        self, key: Key, outcome: Outcome, *, attempts: int, started: datetime, error: str | None = None
    ) -> None:
        dead = 1 if outcome is Outcome.DEAD_LETTERED else 0

        async def write() -> None:
            await self.pool.execute(
                RECORD, key.event_id, key.target, key.fingerprint, key.status, key.starts_at, outcome.value, attempts,
                dead, started, error,
            )  # fmt: skip

        await retry("record a delivery in PostgreSQL", write, retryable=is_retryable, deadline_s=DEADLINE_S)
