"""The enrich agent: the events topic → a classification and a filter decision on each stored row → the notify topic.

Per batch of fetched chunks (the worker's consumer group, like the history agent's):
  1. the rows' classification and filter as stored: a row already decided is a replay and is left alone;
  2. classify (agents/enrich/classify.py): rules file, else the Redis cache, else the LLM, else the built-in rules;
  3. the filter rules decide (agents/enrich/decide.py);
  4. in one PostgreSQL transaction: delayed firings stored, those a resolve cancels or finds due taken out, the
     notify messages produced and acknowledged by Kafka, then every row's classification and filter written (one
     statement), then commit; then the batch is acked. A crash repeats a notify message, never loses one. The
     rows are written after Kafka's acknowledgement, so their locks are held for that statement and the commit
     only: the history agent's next batch updates the same rows (resends) and would wait on them.
Delayed firings are released by a timer on every worker, one worker per row (agents/enrich/delay.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import asyncpg
import faust
import orjson
from aiokafka.structs import ConsumerRecord

from agents.enrich import store
from agents.enrich.classify import Classifier
from agents.enrich.decide import filter_decision, notify_value
from agents.enrich.model import Action, BadEvent, Classification, FilterDecision, StoredEvent
from agents.enrich.shared import for_app
from agents.history.decider import dead_letter
from agents.history.writer import batch_failed, leave_unacked
from app import metrics
from app import rules as rules_file
from app.errors import BrokerUnavailable
from app.events import rfc3339
from app.faust_adapter import ChunkSchema, RecordChunk
from app.produce import OutMessage, produce_all, produce_batched
from app.retry import retry
from app.settings import Settings
from sinks.postgres import is_retryable, open_pool

if TYPE_CHECKING:  # app.faust_app wires the agents
    from app.faust_app import AlertHistoryApp

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_CHUNKS = 8
BATCH_WITHIN_S = 0.05
WRITE_DEADLINE_S = 120.0  # then the worker exits 70, as the history agent does: a restart replays the batch
POOL_SIZE = 3  # the agent's transaction, the release timer's, and one spare


class EnrichAgent:
    def __init__(self, app: faust.App, settings: Settings, rules: rules_file.Rules) -> None:
        self.app = app
        self.settings = settings
        self.topic = settings.topic
        self.rules = rules
        self.shared = for_app(app)
        self.classifier = Classifier(settings, rules, self.shared.cache)
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                assert self.settings.database_url
                self._pool = await open_pool(self.settings.database_url, POOL_SIZE, command_timeout=30)
            return self._pool

    async def close(self) -> None:
        await self.classifier.close()
        if self._pool is not None:
            await self._pool.close()

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        events: list[StoredEvent] = []
        letters: list[OutMessage] = []
        for r in records:
            try:
                events.append(StoredEvent.parse(r.value))
            except BadEvent as exc:
                letters.append(dead_letter(self.settings.dlq_topic, r, f"not an event of {r.topic}: {exc}"))
        if letters:
            metrics.ENRICH_SKIPPED.labels("bad").inc(len(letters))
            metrics.DEAD_LETTERS.inc(len(letters))
            await _retried("enrich: dead letters", lambda: produce_all(self.app, letters))
        if not events:
            return
        pool = await self.pool()
        known = await _retried("enrich: read the batch's rows", lambda: store.known(
            pool, [e.id for e in events], [e.received_ms for e in events]))  # fmt: skip
        todo = [e for e in events if e.id in known and known[e.id].filter is None]
        if len(todo) < len(events):
            missing = sum(e.id not in known for e in events)
            metrics.ENRICH_SKIPPED.labels("missing").inc(missing)
            metrics.ENRICH_SKIPPED.labels("replayed").inc(len(events) - len(todo) - missing)
        if not todo:
            return
        mode = self.shared.modes.mode
        classified = await self.classifier.classify(todo, {e.id: known[e.id].classification for e in todo}, mode)
        decisions = [filter_decision(self.rules.filters, e.labels, classified[e.id]) for e in todo]
        await _retried(
            "enrich: store a batch's classifications and publish it",
            lambda: self._write(todo, classified, decisions, mode.value),
        )

    async def _write(
        self, events: Sequence[StoredEvent], classified: dict[int, Classification], decisions: Sequence[FilterDecision],
        mode: str,
    ) -> None:
        # A batch's events share a few classification objects (the built-in rules', the cache's): each is dumped
        # once, not once per event.
        dumped: dict[int, tuple[dict[str, Any], str]] = {}
        for c in classified.values():
            if id(c) not in dumped:
                as_json = c.as_json()
                dumped[id(c)] = (as_json, orjson.dumps(as_json).decode())
        cls_json = {e.id: dumped[id(classified[e.id])][0] for e in events}
        filters = {e.id: d.as_json() for e, d in zip(events, decisions, strict=True)}
        delayed = []
        for e, d in zip(events, decisions, strict=True):
            if d.action is Action.DELAY and e.status == "firing":
                release_ms = e.received_ms + int(d.for_s * 1000)
                filters[e.id]["until"] = rfc3339(store.at_ms(release_ms))
                message = {"event": e.body, "classification": cls_json[e.id], "filter": d.as_json()}
                delayed.append((e.id, e.fingerprint, e.received_ms, release_ms, orjson.dumps(message).decode()))
        resolves = [(e.fingerprint, e.id, e.received_ms) for e in events if e.status == "resolved"]
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            await store.delay(conn, self.topic, delayed)
            taken = await store.take_for_resolves(conn, self.topic, resolves)
            cancelled = {d.resolve_id: d.event_id for d in taken if d.cancelled and d.resolve_id is not None}
            for resolve_id, firing_id in cancelled.items():
                filters[resolve_id]["cancelled"] = str(firing_id)
            out = self._messages(events, decisions, cls_json, taken, cancelled, mode)
            await produce_batched(self.app, out)
            await store.record(
                conn, [e.id for e in events], [e.received_ms for e in events],
                [dumped[id(classified[e.id])][1] for e in events],
                [orjson.dumps(filters[e.id]).decode() for e in events],
            )  # fmt: skip
            await store.mark(conn, taken, datetime.now(UTC))
        _count(events, classified, decisions, len(cancelled), len(delayed) - len(taken), len(out))

    def _messages(
        self, events: Sequence[StoredEvent], decisions: Sequence[FilterDecision], cls_json: dict[int, Any],
        taken: Sequence[store.Delayed], cancelled: Mapping[int, int], mode: str,
    ) -> list[OutMessage]:
        """In the events' order: a delayed firing a resolve found due goes out just before that resolve."""
        due: dict[int | None, list[store.Delayed]] = {}
        for held in taken:
            if not held.cancelled:
                due.setdefault(held.resolve_id, []).append(held)
        out = []
        for e, d in zip(events, decisions, strict=True):
            out += [self.released(x, mode) for x in due.get(e.id, ())]
            if e.id in cancelled or d.action is Action.DENY or (d.action is Action.DELAY and e.status == "firing"):
                continue
            value = notify_value(e.body, cls_json[e.id], d.as_json(), mode)
            out.append(OutMessage(self.settings.notify_topic, e.fingerprint.encode(), value))
        return out

    def released(self, d: store.Delayed, mode: str) -> OutMessage:
        m = d.message
        value = notify_value(m["event"], m["classification"], m["filter"], mode)
        return OutMessage(self.settings.notify_topic, d.fingerprint.encode(), value)


async def _retried(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """PostgreSQL or Kafka unavailable: retried up to WRITE_DEADLINE_S, then the batch fails (the worker exits)."""
    return await retry(
        what, call, retryable=lambda exc: is_retryable(exc) or isinstance(exc, BrokerUnavailable),
        deadline_s=WRITE_DEADLINE_S,
    )  # fmt: skip


def _count(
    events: Sequence[StoredEvent], classified: dict[int, Classification], decisions: Sequence[FilterDecision],
    cancelled: int, delayed: int, published: int,
) -> None:
    """The batch's metrics; `delayed`: how many more firings are held than before it."""
    for source, n in Counter(classified[e.id].source.value for e in events).items():
        metrics.CLASSIFIED.labels(source).inc(n)
    for action, n in Counter(d.action.value for d in decisions).items():
        metrics.FILTER_DECISIONS.labels(action).inc(n)
    if cancelled:
        metrics.FILTER_DECISIONS.labels("cancelled").inc(cancelled)
    metrics.DELAYED_PENDING.inc(delayed)
    metrics.NOTIFY_PRODUCED.inc(published)


def wire(app: AlertHistoryApp, settings: Settings) -> EnrichAgent | None:
    """Register the enrich agent on the events topic, its release timer and its mode refresh on `app`."""
    if not settings.events_enabled:
        return None
    from agents.enrich.delay import Releaser

    rules = rules_file.load(settings.rules_file) if settings.rules_file else rules_file.EMPTY
    enrich = EnrichAgent(app, settings, rules)
    app.resources.closers.append(enrich.close)
    app.chunked_topics = app.chunked_topics | {settings.events_topic}
    topic = app.topic(settings.events_topic, schema=ChunkSchema(), partitions=settings.partitions)

    @app.agent(topic, name="alert-history-enrich")
    async def run(stream: faust.StreamT) -> None:
        async for events in cast(faust.Stream, stream).take_events(BATCH_CHUNKS, within=BATCH_WITHIN_S):
            try:
                records = [r for ev in events for r in _chunk(ev).records]
                await enrich.process(records)
            except asyncio.CancelledError:
                leave_unacked(events)
                raise
            except Exception as exc:
                batch_failed(app, events, exc)
                return

    releaser = Releaser(enrich)
    app.timer(interval=releaser.interval_s, on_leader=False, name="enrich-release-delayed")(releaser.run)
    if enrich.shared.modes.shared:
        app.timer(interval=0.5, on_leader=False, name="enrich-mode-refresh")(enrich.shared.modes.refresh)
    log.debug("enrich agent wired: %s; LLM %s", rules.summary(), "on" if settings.llm_url else "off")
    return enrich


def _chunk(event: faust.types.EventT) -> RecordChunk:
    return cast(RecordChunk, event.value)
