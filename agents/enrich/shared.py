"""What the enrich stage keeps in the optional Redis: the classification cache and the enrichment mode.

Redis is optional: while it is down every call answers None at once (a cache miss, the mode this process last
knew), it is tried again every `RETRY_S`, and going down and coming back are logged once each.

The cache key is the alert's identity less its volatile labels: alertname and every label but those in
`VOLATILE_LABELS` (where an alert runs, not what it is), hashed with the model and the prompt's version, so one
answer serves the alert's later events and the same alert on other instances. Only LLM answers are cached, each at
most `ENRICH_CACHE_MAX_BYTES`, for `ENRICH_CACHE_TTL` seconds (the server's maxmemory bounds the whole).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from agents.enrich.model import Verdict
from app.errors import AlertHistoryError
from app.redact import describe
from app.settings import EnrichmentMode, Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_S = 2.0
TIMEOUT_S = 0.5  # per Redis call: a frozen Redis costs a batch this long, then nothing until RETRY_S has passed
PROMPT_VERSION = "1"  # bump when the prompt changes: cached answers of the old one are not reused
VOLATILE_LABELS = frozenset({
    "instance", "pod", "pod_name", "pod_ip", "container", "container_id", "uid", "node", "host", "hostname", "ip",
    "endpoint",
})  # fmt: skip


class RedisDown(AlertHistoryError):
    """Redis is configured but not answering."""


class RedisLink:
    def __init__(self, url: str | None) -> None:
        self.client = (
            aioredis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S) if url else None
        )
        self.up = True
        self._retry_at = 0.0

    @property
    def configured(self) -> bool:
        return self.client is not None

    async def call(self, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T | None:
        """`op`'s result, or None: Redis is not configured, down, or failed just now."""
        if self.client is None or (not self.up and time.monotonic() < self._retry_at):
            return None
        try:
            result = await op(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            if self.up:
                log.warning("Redis unreachable (%s): no classification cache, the mode as last known", describe(exc))
                self.up = False
            self._retry_at = time.monotonic() + RETRY_S
            return None
        if not self.up:
            log.warning("Redis reachable again: classification cache and shared mode back")
            self.up = True
        return result

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


def cache_key(prefix: str, model: str, labels: Mapping[str, str]) -> str:
    identity = sorted((k, v) for k, v in labels.items() if k not in VOLATILE_LABELS)
    digest = hashlib.sha256(orjson.dumps([PROMPT_VERSION, model, identity])).hexdigest()
    return f"{prefix}{digest}"


class Cache:
    def __init__(self, link: RedisLink, settings: Settings) -> None:
        self.link = link
        self.prefix = f"alert-history:{settings.app_id}:classification:"
        self.ttl_s = settings.enrich_cache_ttl
        self.max_bytes = settings.enrich_cache_max_bytes

    def key(self, model: str, labels: Mapping[str, str]) -> str:
        return cache_key(self.prefix, model, labels)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Verdict]:
        """The cached verdicts of those keys that have one (one round trip)."""
        if not keys:
            return {}
        values = await self.link.call(lambda r: r.mget(list(keys)))
        out: dict[str, Verdict] = {}
        for key, value in zip(keys, values or (), strict=False):
            if value is None:
                continue
            try:
                out[key] = Verdict.model_validate_json(value)
            except ValidationError:  # written by another version: asked again, then overwritten
                continue
        return out

    async def put_many(self, verdicts: Mapping[str, Verdict]) -> None:
        entries = {k: v.model_dump_json().encode() for k, v in verdicts.items()}
        entries = {k: v for k, v in entries.items() if len(v) <= self.max_bytes}
        if not entries:
            return

        async def put(r: aioredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            for key, value in entries.items():
                pipe.set(key, value, ex=self.ttl_s)
            return await pipe.execute()

        await self.link.call(put)


class ModeStore:
    """The enrichment mode: in Redis when configured (every node reads the same key), else this process's own."""

    def __init__(self, link: RedisLink, settings: Settings) -> None:
        self.link = link
        self.key = f"alert-history:{settings.app_id}:enrichment-mode"
        self.mode = settings.enrichment_mode  # the last known; the default until Redis says otherwise
        self._bad: bytes | None = None

    @property
    def shared(self) -> bool:
        return self.link.configured

    async def refresh(self) -> EnrichmentMode:
        """The mode as Redis holds it now (unchanged when Redis is down or holds no mode)."""
        value = await self.link.call(lambda r: r.get(self.key))
        if isinstance(value, str):
            value = value.encode()
        if value is not None:
            try:
                self.mode = EnrichmentMode(value.decode())
                self._bad = None
            except (ValueError, UnicodeDecodeError):
                if value != self._bad:
                    log.warning("Redis key %s holds no enrichment mode (%r): keeping %s", self.key, value[:40],
                                self.mode.value)  # fmt: skip
                    self._bad = value
        return self.mode

    async def set(self, mode: EnrichmentMode) -> None:
        """Every node's mode (Redis), or this process's alone without Redis; RedisDown when Redis is configured
        but does not take it (changing only this process would split the nodes silently)."""
        if self.link.configured:
            if await self.link.call(lambda r: r.set(self.key, mode.value)) is None:
                raise RedisDown("Redis did not take the mode: it is configured but not answering; try again")
        self.mode = mode


class Shared:
    """One Redis link per process, shared by the enrich agent and the /enrichment/mode view."""

    def __init__(self, settings: Settings) -> None:
        self.link = RedisLink(settings.redis_url)
        self.cache = Cache(self.link, settings)
        self.modes = ModeStore(self.link, settings)


def for_app(app: Any) -> Shared:
    """The app's Shared, made on first use (a web node has no enrich agent, but serves the mode)."""
    shared: Shared | None = getattr(app, "enrichment", None)
    if shared is None:
        shared = app.enrichment = Shared(app.settings)
        app.resources.closers.append(shared.link.close)
    return shared
