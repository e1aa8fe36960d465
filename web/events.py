"""`GET /events`: Server-Sent Events of new stored events, read from the events topic by every node itself.

One reader per node (`EventsHub`: an aiokafka consumer with no group, assigned every partition of the topic,
from its end) decodes each event once and fans it out to every client's queue. A consumer per client would
multiply fetches, decoding and broker connections by the number of open dashboards, and each one's start
(metadata, seek to the end) would delay its stream; a shared reader costs one connection and one decode per
event whatever the number of clients, and web nodes serve it without Redis or a consumer group (no rebalance).

A client that resumes (`Last-Event-ID`, or `cursor=`) first gets what it missed from a short-lived reader of
its own, from its cursor up to where the shared reader stood when it subscribed, then the live events queued
meanwhile: no gap and no repeat, on any node, since the cursor is the topic's offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from app import metrics
from app.matchers import Matcher
from app.redact import describe
from web import params, sse
from web.api import ApiView, Busy, HTTPProblem
from web.models import EventsHeaders, EventsParams

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
REPLAY_STALL_S = 30.0  # a resume whose reader gets nothing from Kafka this long ends (the client retries)
RETRY_MS = 2000  # how soon an EventSource reconnects
GONE_CHECK_S = 1.0
FRAMES_PER_WRITE = 100
FETCH_MAX_BYTES = 4 * 1024 * 1024  # the node's fetch buffers stay small whatever the topic holds
PARTITION_FETCH_BYTES = 1024 * 1024
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


def _consumer(brokers: str, client_id: str, reset: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=brokers,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset=reset,
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
    )


def _decode(value: bytes | None) -> Any:
    """The event, or None for a value that is not a JSON object (never sent; its offset still counts)."""
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


async def partition_count(brokers: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers, client_id="alert-history-events-admin")
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = next((d["partitions"] for d in described if d["topic"] == topic), None)
    if not partitions:
        raise LookupError(f"topic {topic} does not exist")
    return len(partitions)


class EventsHub:
    """The node's one reader of the events topic, fanning each event out to the subscribed clients."""

    def __init__(self, brokers: str, topic: str, client_id: str) -> None:
        self.brokers = brokers
        self.topic = topic
        self.client_id = client_id
        self.subscribers: set[sse.Subscriber] = set()
        self.positions: list[int] = []  # per partition, the next offset the reader will dispatch
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._undecodable_logged = False

    @property
    def partitions(self) -> int:
        return len(self.positions)

    async def ensure_running(self) -> None:
        """Start reading from the topic's end, unless already reading (a failed reader is started anew)."""
        async with self._lock:
            if self._task is not None and not self._task.done():
                return
            await self._close()
            consumer = _consumer(self.brokers, self.client_id, "latest")
            try:
                async with asyncio.timeout(START_TIMEOUT_S):
                    count = await partition_count(self.brokers, self.topic)
                    await consumer.start()
                    tps = [TopicPartition(self.topic, p) for p in range(count)]
                    consumer.assign(tps)
                    await consumer.seek_to_end(*tps)
                    positions = [await consumer.position(tp) for tp in tps]
            except BaseException:
                await consumer.stop()
                raise
            self._consumer, self.positions = consumer, positions
            self._task = asyncio.create_task(self._run(consumer), name="events-hub")
            log.info("reading %s from its end (%d partitions) for /events", self.topic, len(tps))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for tp, records in batch.items():
                    for r in records:
                        self._dispatch(tp.partition, r.offset, r.value)
                        if self.subscribers:
                            await asyncio.sleep(0)  # the clients' writers run between records of a large fetch
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the clients reconnect with their cursors; the next one starts a new reader
            log.error("the /events reader of %s failed (%s): dropping its %d clients", self.topic, describe(exc),
                      len(self.subscribers))  # fmt: skip
            for sub in list(self.subscribers):
                sub.drop("reader")

    def _dispatch(self, partition: int, offset: int, value: bytes | None) -> None:
        self.positions[partition] = offset + 1
        if not self.subscribers:
            return
        event = _decode(value)
        if event is None and not self._undecodable_logged:
            self._undecodable_logged = True
            log.warning("%s[%d]@%d is not a JSON event: /events skips it (logged once)", self.topic, partition, offset)
        data = value if value is not None and sse.one_line(value) else orjson.dumps(event)
        for sub in list(self.subscribers):
            sub.offer(partition, offset, event, data)

    def subscribe(self, sub: sse.Subscriber) -> list[int]:
        """Feed `sub` from now on; the reader's position now (every later record is at or past it)."""
        self.subscribers.add(sub)
        return list(self.positions)

    def unsubscribe(self, sub: sse.Subscriber) -> None:
        self.subscribers.discard(sub)

    async def end_offsets(self) -> list[int]:
        assert self._consumer is not None
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        ends = await self._consumer.end_offsets(tps)
        return [ends[tp] for tp in tps]

    async def stop(self) -> None:
        async with self._lock:
            for sub in list(self.subscribers):
                sub.drop("stopping")
            await self._close()

    async def _close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


@dataclass(frozen=True)
class Gap:
    """Offsets of a partition the topic no longer holds (retention deleted them before the client resumed)."""

    partition: int
    first: int
    resumed_at: int


async def replay(hub: EventsHub, ranges: dict[int, tuple[int, int]]) -> AsyncIterator[ConsumerRecord | Gap]:
    """Each partition's records from `start` up to (not including) `stop`, in order per partition."""
    consumer = _consumer(hub.brokers, f"{hub.client_id}-resume", "earliest")
    async with asyncio.timeout(START_TIMEOUT_S):
        await consumer.start()
    try:
        tps = {p: TopicPartition(hub.topic, p) for p in ranges}
        consumer.assign(list(tps.values()))
        first = await consumer.beginning_offsets(list(tps.values()))
        pending: set[int] = set()
        for p, (start, stop) in ranges.items():
            begin = max(start, first[tps[p]])
            if begin > start:
                yield Gap(p, start, begin)
            consumer.seek(tps[p], begin)
            if begin < stop:
                pending.add(p)
        stalled_since = time.monotonic()
        while pending:
            batch = await consumer.getmany(*(tps[p] for p in pending), timeout_ms=1000)
            stalled_since = time.monotonic() if batch else stalled_since
            if time.monotonic() - stalled_since > REPLAY_STALL_S:
                raise TimeoutError(f"no records from Kafka for {REPLAY_STALL_S:g} s while resuming")
            for tp, records in batch.items():
                for r in records:
                    if r.offset < ranges[tp.partition][1]:
                        yield r
            for p in list(pending):
                if await consumer.position(tps[p]) >= ranges[p][1]:
                    pending.discard(p)
    finally:
        await consumer.stop()


class ClientGone(Exception):
    """The client went away, stopped reading, or was dropped."""


class EventStream:
    """One client's stream: the resume (if any), then the live events, heartbeats between them."""

    def __init__(self, request: web.Request, hub: EventsHub, matchers: Sequence[Matcher], settings: Any) -> None:
        self.request = request
        self.hub = hub
        self.heartbeat_s: float = settings.events_heartbeat
        self.write_timeout_s: float = settings.events_write_timeout
        self.sub = sse.Subscriber(matchers, [], [], settings.events_client_buffer, on_drop=self._dropped)
        self.resp = web.StreamResponse(headers=SSE_HEADERS)

    def _dropped(self, reason: str) -> None:
        metrics.EVENT_STREAM_DROPS.labels(reason).inc()
        log.info("/events client %s dropped: %s", self.request.remote, reason)
        if self.request.transport is not None:
            self.request.transport.abort()

    async def run(self, cursor: list[int] | None) -> web.StreamResponse:
        now = list(self.hub.positions)
        start = cursor if cursor is not None else now
        self.sub.floor = list(start)
        self.sub.position = [max(c, s) for c, s in zip(start, now, strict=True)]
        snapshot = self.hub.subscribe(self.sub)  # no await since `now`: the same positions
        try:
            if cursor is not None:
                ends = await self.hub.end_offsets()
                ahead = [(p, c, e) for p, (c, e) in enumerate(zip(cursor, ends, strict=True)) if c > e]
                if ahead:
                    p, c, e = ahead[0]
                    raise HTTPProblem(400, f"cursor: partition {p} at offset {c} is past the topic's end ({e})")
            await self.resp.prepare(self.request)
            await self._send(f"retry: {RETRY_MS}\n".encode() + sse.heartbeat_frame(start))
            if cursor is not None:
                await self._resume(cursor, snapshot)
            await self._live()
        except ClientGone:
            if self.request.transport is not None:
                self.request.transport.abort()
        finally:
            self.hub.unsubscribe(self.sub)
        return self.resp

    async def _resume(self, cursor: list[int], snapshot: list[int]) -> None:
        """What the client missed: [cursor, snapshot) of each partition, filtered; the live queue waits."""
        position = list(cursor)
        ranges = {p: (c, s) for p, (c, s) in enumerate(zip(cursor, snapshot, strict=True)) if c < s}
        if not ranges:
            return
        beat = time.monotonic()
        frames: list[bytes] = []
        try:
            async for item in replay(self.hub, ranges):
                if isinstance(item, Gap):
                    position[item.partition] = item.resumed_at
                    gap = {"partition": item.partition, "from": item.first, "to": item.resumed_at}
                    frames.append(sse.named_frame("gap", orjson.dumps(gap), position))
                    continue
                position[item.partition] = item.offset + 1
                event = _decode(item.value)
                if event is not None and sse.matches(self.sub.matchers, event):
                    frames.append(sse.event_frame(orjson.dumps(event), position))
                if len(frames) >= FRAMES_PER_WRITE or (frames and time.monotonic() - beat > 0.2):
                    await self._send_events(frames)
                    frames, beat = [], time.monotonic()
                elif time.monotonic() - beat > self.heartbeat_s:
                    await self._send(sse.heartbeat_frame(position))
                    beat = time.monotonic()
        except ClientGone:
            raise
        except Exception as exc:  # Kafka unreachable or stalled: the client retries from its last cursor
            log.warning("/events resume for %s failed: %s", self.request.remote, describe(exc))
            raise ClientGone(f"resume failed: {describe(exc)}") from None
        await self._send_events(frames)

    async def _live(self) -> None:
        last_id: tuple[int, ...] | None = None
        beat = time.monotonic()
        while True:
            # aiohttp does not cancel a handler whose client left: look at the connection every second.
            got = await self.sub.wait(min(self.heartbeat_s, GONE_CHECK_S))
            if self.sub.dropped is not None:
                raise ClientGone(self.sub.dropped)
            transport = self.request.transport
            if transport is None or transport.is_closing():
                raise ClientGone("disconnected")
            if not got:
                if time.monotonic() - beat >= self.heartbeat_s:
                    position = tuple(self.sub.position)  # nothing queued: every event before it was sent
                    await self._send(sse.heartbeat_frame(position if position != last_id else None))
                    last_id, beat = position, time.monotonic()
                continue
            frames: list[bytes] = []
            while len(frames) < FRAMES_PER_WRITE and (item := self.sub.take()) is not None:
                frames.append(sse.event_frame(*item))
                last_id = item[1]
            await self._send_events(frames)

    async def _send_events(self, frames: list[bytes]) -> None:
        if frames:
            await self._send(b"".join(frames))
            metrics.EVENT_STREAM_SENT.inc(len(frames))

    async def _send(self, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await self.resp.write(data)
        except TimeoutError:
            self.sub.drop("write_timeout")
            raise ClientGone("write timeout") from None
        except (ConnectionError, RuntimeError) as exc:  # aiohttp: RuntimeError once the transport is closed
            raise ClientGone(str(exc)) from None


def hub_of(app: Any) -> EventsHub:
    """The node's reader, made on first use and stopped with the app's resources."""
    hub: EventsHub | None = getattr(app, "events_hub", None)
    if hub is None:
        settings = app.settings
        hub = EventsHub(settings.kafka_brokers, settings.events_topic, f"{settings.app_id}-events")
        app.events_hub = hub
        app.resources.closers.append(hub.stop)
    return hub


class Events(ApiView):
    """Server-Sent Events of the events topic: `filter` as /history, resumable by `Last-Event-ID` or `cursor`."""

    streams = 0  # open on this node

    async def get(self, request: web.Request) -> web.StreamResponse:
        settings = self.app.settings
        if not settings.events_enabled:
            raise HTTPProblem(404, "events: ALERT_HISTORY_EVENTS_ENABLED is false here, so there is no events topic")
        q = params.read(request, EventsParams)
        cursor_param = q.one("cursor")
        matchers = q.matchers()
        header = (params.header(request, EventsHeaders, "last_event_id") or "").strip()
        raw_cursor, source = (header, "Last-Event-ID") if header else (cursor_param, "cursor")
        if Events.streams >= settings.events_streams:
            raise Busy(
                429,
                f"{Events.streams} /events streams already open on this node (ALERT_HISTORY_EVENTS_STREAMS); "
                "retry later",
                retry_after_s=5,
            )
        Events.streams += 1
        metrics.EVENT_STREAMS.set(Events.streams)
        try:
            hub = hub_of(self.app)
            try:
                await hub.ensure_running()
            except Exception as exc:
                why = f"the events topic cannot be read from Kafka ({describe(exc)}); retry later"
                raise Busy(503, why, retry_after_s=5) from None
            try:
                cursor = sse.decode_cursor(raw_cursor, hub.partitions) if raw_cursor else None
            except sse.CursorError as exc:
                raise HTTPProblem(400, f"{source}: {exc}") from None
            return await EventStream(request, hub, matchers, settings).run(cursor)
        finally:
            Events.streams -= 1
            metrics.EVENT_STREAMS.set(Events.streams)
