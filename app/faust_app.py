"""The app factory shared by the CLI and the tests: settings in, a wired Faust app out."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import mode
import redis.asyncio as aioredis

from app import faust_adapter, lag, retention
from app.faust_adapter import Consumer
from app.logs import logging_config
from app.matchers import MAX_FILTER_LEN, MAX_MATCHERS
from app.pipeline import Pipeline, wire
from app.settings import Settings
from app.topics import cluster_replication
from sinks.postgres import PostgresSink, open_pool

log = logging.getLogger(__name__)

# The HTTP parser's bounds (aiohttp's are 8190 bytes): past them it answers a plain-text 400 before any view runs.
# A request line holds the most filter= values /openapi.json allows, each of the longest length and every
# character percent-encoded (three bytes), and the other parameters; a header, the longest /events resume cursor.
MAX_REQUEST_LINE = MAX_MATCHERS * MAX_FILTER_LEN * 3 + 64 * 1024
MAX_HEADER_FIELD = 64 * 1024
EXIT_CONFIG = 78  # EX_CONFIG: this installation cannot run (an untested Faust), restarting will not help


class Resources(mode.Service):
    """Connections opened and closed in one lifecycle: PostgreSQL (the sink's pool, and a separate pool for
    queries so a slow report never delays a batch commit) and optional Redis."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not settings.database_url:
            raise ValueError("ALERT_HISTORY_DATABASE_URL is required by the worker")
        self.settings = settings
        self.sink = PostgresSink(settings.database_url)
        self.redis: aioredis.Redis | None = None
        self.db: Any = None  # asyncpg pool for the web views' reads
        self.closers: list[Callable[[], Awaitable[None]]] = []

    async def on_start(self) -> None:
        if self.settings.pipeline_enabled:
            await self.sink.open()
        # Reads give up on a PostgreSQL that does not answer (a 503) rather than hang the request.
        assert self.settings.database_url is not None  # checked in __init__
        self.db = await open_pool(
            self.settings.database_url,
            8,
            command_timeout=self.settings.read_client_timeout,
        )
        if self.settings.redis_url:
            client = aioredis.from_url(self.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            try:
                await client.ping()
                self.redis = client
            except Exception as exc:  # Redis is optional: degrade, say so once
                log.warning("Redis unreachable (%r): enrichment mode falls back to process memory", exc)
                await client.aclose()

    async def on_stop(self) -> None:
        for close in self.closers:
            await close()
        await self.sink.close()
        if self.db is not None:
            await self.db.close()
        if self.redis is not None:
            await self.redis.aclose()


class Monitor(faust.Monitor):
    """Faust's monitor without its per-message statistics (timings, per-stream counters): nothing reads
    them, our own metrics (app/metrics.py) count per batch, and they cost CPU on every message."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass


class AlertHistoryApp(faust.App):
    """Faust app with typed access to what the views and agents share."""

    settings: Settings
    resources: Resources
    pipeline: Pipeline | None  # None on a web node (ALERT_HISTORY_PIPELINE_ENABLED=false)
    chunked_topics: frozenset[str] = frozenset()  # delivered a fetched chunk per event (app/faust_adapter.py)

    def _new_transport(self) -> Any:
        transport = super()._new_transport()
        # Faust's consumer, delivering chunks of records (app/faust_adapter.py).
        transport.Consumer = Consumer  # type: ignore[misc]  # Faust declares it a class variable; this transport's own
        return transport

    async def on_first_start(self) -> None:
        await super().on_first_start()
        await self._replicate_faust_topics()

    async def _replicate_faust_topics(self) -> None:
        """Faust declares the tables' changelogs and its assignor topic itself, after this: on a cluster they are
        kept as ours are (app/topics.py), so a broker lost never takes table state PostgreSQL already reflects."""
        replication = await cluster_replication(self.settings.kafka_brokers or "")
        self.conf.topic_replication_factor = replication.factor
        for table in self.tables.values():
            changelog = table.changelog_topic
            changelog.config = {**(changelog.config or {}), **replication.topic_config}


def create_app(settings: Settings) -> AlertHistoryApp:
    datadir = Path(settings.data_dir) / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = AlertHistoryApp(
        settings.app_id,
        broker=settings.broker_url,
        store="rocksdb://",
        datadir=str(datadir),
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        topic_partitions=settings.partitions,
        producer_acks=-1,
        producer_linger_ms=5,
        # A batch's changelog goes out as one record batch per partition (under the broker's 1 MiB limit).
        producer_max_batch_size=512 * 1024,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=10_000,
        # A worker killed hard is noticed in ~10 s, not the default minute: its partitions move sooner.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        # No standbys: a takeover reads the partition's whole changelog (its size follows live alerts, which
        # expire). The takeover tests run this way; standby promotion has not been tested.
        table_standby_replicas=0,
        autodiscover=False,
        Monitor=Monitor,
        # Faust's repaired Cython stream path: take events already queued instead of awaiting the channel.
        cython_optimizations=True,
        # Events of the pipeline's stream are chunks of up to CHUNK_RECORDS records. Fetching of a partition
        # pauses when its queue is 80% full: 32 chunks, four batches ahead of the agent.
        stream_buffer_maxsize=40,
        logging_config=logging_config(settings),
        web_application_options={
            "client_max_size": settings.max_body_bytes,
            "handler_args": {"max_line_size": MAX_REQUEST_LINE, "max_field_size": MAX_HEADER_FIELD},
        },
    )
    app.settings = settings
    app.resources = Resources(settings, loop=app.loop)
    app.add_dependency(app.resources)
    app.pipeline = None
    if settings.pipeline_enabled:
        app.pipeline = wire(app, settings, app.resources.sink)
        if app.pipeline.history is not None:
            app.resources.closers.append(app.pipeline.history.holes.close)
        _schedule_upkeep(app)
    else:
        app.producer_only = True  # Faust starts the web server and the producer: no consumer, no group to join
    _at_start(app)
    from web.routes import register

    register(app)
    return app


def _dump_tasks() -> None:
    """`kill -USR1 <worker>`: every asyncio task's stack into the log, to see what a stuck worker awaits."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=out)
    log.warning("asyncio tasks (SIGUSR1):\n%s", out.getvalue())


def _at_start(app: AlertHistoryApp) -> None:
    async def start() -> None:
        history = app.pipeline.history if app.pipeline is not None else None
        tables = [history.states.table] if history is not None else []
        try:
            faust_adapter.check(app, tables)
        except faust_adapter.FaustIncompatible as exc:
            log.critical("%s", exc)
            logging.shutdown()
            os._exit(EXIT_CONFIG)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
        _tune_gc()

    app.task(start)


def _tune_gc() -> None:
    """A batch's objects (messages, events, rows) outlive a few young collections and are then dropped, so
    at the default thresholds (700, 10, 10) they kept reaching the oldest generation and triggering full
    collections, the loop's worst stalls (seen as webhook latency; docs/performance.md). Young collections
    every 50,000 allocations instead, and the objects that exist once the worker has started (modules, the
    app) frozen out of every collection."""
    gc.set_threshold(50_000, 10, 10)
    gc.freeze()


def _schedule_upkeep(app: AlertHistoryApp) -> None:
    async def run() -> None:
        try:
            await retention.upkeep(app.resources.db, app.settings.retention_days)
        except Exception:  # retried next hour; the sink creates the partitions it needs meanwhile
            log.exception("partition upkeep failed")

    async def analyze() -> None:
        try:
            async with app.resources.db.acquire() as conn:
                await retention.analyze_filling(conn)
        except Exception:  # tried again next minute
            log.exception("analyzing the filling partitions failed")

    app.task(run)
    app.timer(interval=3600.0, name="partition-upkeep")(run)
    app.timer(interval=60.0, name="partition-analyze")(analyze)
    lag.schedule(app)
