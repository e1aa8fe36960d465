"""Classifying a batch: the rules file's classification rules decide without any call; else, with an LLM configured,
the Redis cache, else the LLM (not in `transparent` mode); else the built-in rules.

The batch's LLM requests run concurrently (one per distinct cache key), each bounded by `LLM_TIMEOUT`: a slow or
dead LLM holds a batch back at most that long, whichever partitions its events came from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from agents.enrich.decide import by_builtin_rules, by_operator_rules
from agents.enrich.llm import LLM
from agents.enrich.model import Classification, Source, StoredEvent, Verdict
from agents.enrich.shared import Cache
from app import metrics
from app.rules import Rules
from app.settings import EnrichmentMode, Settings

log = logging.getLogger(__name__)


class Classifier:
    def __init__(self, settings: Settings, rules: Rules, cache: Cache) -> None:
        self.rules = rules
        self.cache = cache
        self.llm = LLM(settings) if settings.llm_url else None
        self.model = settings.llm_model or ""

    async def close(self) -> None:
        if self.llm is not None:
            await self.llm.close()

    async def classify(
        self, events: Sequence[StoredEvent], stored: Mapping[int, dict[str, Any] | None], mode: EnrichmentMode
    ) -> dict[int, Classification]:
        """Each event's classification by id; one the row already holds is kept (not asked again)."""
        out: dict[int, Classification] = {}
        ask: list[StoredEvent] = []
        for e in events:
            kept = _valid(stored.get(e.id))
            decided = kept or by_operator_rules(self.rules.classification, e.labels, e.annotations)
            if decided is not None:
                out[e.id] = decided
            else:
                ask.append(e)
        answers = await self._llm(ask, mode) if self.llm is not None and ask else {}
        for e in ask:
            out[e.id] = answers.get(e.id) or by_builtin_rules(e.labels, e.annotations)
        return out

    async def _llm(self, events: Sequence[StoredEvent], mode: EnrichmentMode) -> dict[int, Classification]:
        assert self.llm is not None
        keys = {e.id: self.cache.key(self.model, e.labels) for e in events}
        cached = await self.cache.get_many(sorted(set(keys.values())))
        hits = sum(keys[e.id] in cached for e in events)
        metrics.CLASSIFICATION_CACHE.labels("hit").inc(hits)
        metrics.CLASSIFICATION_CACHE.labels("miss").inc(len(events) - hits)
        fresh: dict[str, Verdict] = {}
        if mode is not EnrichmentMode.TRANSPARENT:  # transparent: no LLM call at all
            first = {keys[e.id]: e for e in reversed(events) if keys[e.id] not in cached}  # one request per key
            answers = await asyncio.gather(*(self.llm.classify(e.status, e.labels, e.annotations)
                                             for e in first.values()))  # fmt: skip
            fresh = {k: v for k, v in zip(first, answers, strict=True) if v is not None}
            await self.cache.put_many(fresh)
        out = {}
        for e in events:
            key = keys[e.id]
            if key in cached:
                out[e.id] = Classification.of(cached[key], Source.CACHE, self.model)
            elif key in fresh:
                out[e.id] = Classification.of(fresh[key], Source.LLM, self.model)
        return out


def _valid(stored: dict[str, Any] | None) -> Classification | None:
    """A classification the row holds, if it is one (the enrich agent's own, written before a crash)."""
    if stored is None:
        return None
    try:
        return Classification.model_validate(stored)
    except ValidationError:
        log.debug("stored classification not of the current shape: classified again")
        return None
