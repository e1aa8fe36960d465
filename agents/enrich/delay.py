"""Releasing delayed firings whose delay ended: the timer of every worker, each row released by one of them.

Per tick, in one transaction: due rows locked and deleted (other workers skip locked rows), their notify messages
produced (shaped by the mode now) and acknowledged, their rows marked released, commit. A crash before the commit
leaves the rows for the next tick: a firing may be published twice after a crash, never lost. A resolve's batch
deleting the same row waits for this transaction, and then finds the firing published, so it publishes the resolve.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agents.enrich import store
from app import metrics
from app.produce import produce_all
from app.redact import describe

if TYPE_CHECKING:
    from agents.enrich.agent import EnrichAgent

log = logging.getLogger(__name__)

GAUGE_EVERY = 10  # ticks between counts of the pending rows (a count is a scan of the topic's rows)


class Releaser:
    interval_s = 1.0

    def __init__(self, agent: EnrichAgent) -> None:
        self.agent = agent
        self._ticks = 0
        self._lock = asyncio.Lock()
        self._failing: str | None = None

    async def run(self) -> None:
        if self._lock.locked():
            return  # the last tick is still releasing
        async with self._lock:
            try:
                while await self.release_due() == store.RELEASE_BATCH:
                    pass
                if self._ticks % GAUGE_EVERY == 0:
                    metrics.DELAYED_PENDING.set(await store.pending(await self.agent.pool(), self.agent.topic))
                self._ticks += 1
                self._failing = None
            except Exception as exc:  # tried again next tick; the rows stay in the table meanwhile
                if describe(exc) != self._failing:
                    self._failing = describe(exc)
                    log.warning("releasing delayed firings failed, retrying each second: %s", self._failing)

    async def release_due(self) -> int:
        """One transaction's worth of due firings published; how many."""
        pool = await self.agent.pool()
        mode = self.agent.shared.modes.mode.value
        async with pool.acquire() as conn, conn.transaction():
            due = await store.take_due(conn, self.agent.topic)
            if not due:
                return 0
            await store.mark(conn, due, datetime.now(UTC))
            await produce_all(self.agent.app, [self.agent.released(d, mode) for d in due])
        metrics.NOTIFY_PRODUCED.inc(len(due))
        metrics.DELAYED_PENDING.dec(len(due))
        log.debug("released %d delayed firings", len(due))
        return len(due)
