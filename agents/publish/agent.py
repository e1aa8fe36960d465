"""The publish agent: `<TOPIC>-notify` → every matching target, each delivery once, in order per fingerprint.

Per message: parse (unreadable → the notify dead-letter topic) → the targets whose matchers hold → one delivery
per target into that target's lane. The message is held (not acked) until each of its deliveries has ended:
delivered, skipped as recorded, or on the dead-letter topic. So Kafka's committed offset never passes a
delivery that has not ended, and a restart or a new owner of the partition delivers what had not, the ledger
skipping what had.

A rebalance waits for every held message (Faust's `stream_wait_empty`), and a delivery may retry for a minute:
so when one begins, the lanes abandon what has not ended, leaving those messages unacked for the next owner.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import faust
import mode

from agents.publish import targets as target_file
from agents.publish.decider import Key, targets_for
from agents.publish.lane import Job, Lane, Shared, dead_letter_message
from agents.publish.ledger import Ledger
from app import metrics
from app.errors import ConfigError, InvalidAlert
from app.faust_adapter import ChunkSchema
from app.produce import OutMessage, produce_all
from app.settings import Settings
from sinks.publishers.base import Target
from sinks.publishers.message import parse

if TYPE_CHECKING:  # app.faust_app wires the agents
    from app.faust_app import AlertHistoryApp

log = logging.getLogger(__name__)

EXIT_CANNOT_RECORD = 70  # EX_SOFTWARE, as the history agent: the supervisor restarts us
EXIT_CONFIG = 2  # a rules file that cannot be used: restarting will not help
REBALANCE_CHECK_S = 0.1


class Hold:
    """A notify message held until each of its deliveries has ended: then acked, or, if one was abandoned (a
    rebalance, a stop), left unacked for the next owner, who skips what the ledger records as done."""

    __slots__ = ("abandoned", "event", "left")

    def __init__(self, event: faust.types.EventT, deliveries: int) -> None:
        self.event = event
        self.left = deliveries
        self.abandoned = False

    def done(self, ended: bool) -> None:
        self.abandoned = self.abandoned or not ended
        self.left -= 1
        if self.left == 0:
            if self.abandoned:
                self.event.message.acked = True  # marked done without an ack: its offset is not committed
            else:
                self.event.ack()


class Publisher(mode.Service):
    def __init__(self, app: faust.App, settings: Settings, targets: list[Target], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.settings = settings
        self.targets = targets
        self.lanes: dict[str, Lane] = {}
        self.ready = asyncio.Event()
        self._ledger: Ledger | None = None
        self._session: aiohttp.ClientSession | None = None

    async def on_start(self) -> None:
        assert self.settings.database_url
        self._ledger = await Ledger.open(self.settings.database_url)
        self._session = aiohttp.ClientSession()
        shared = Shared(self._ledger, self._session, self._dead_letters, self.settings.notify_dlq_topic, _exit)
        self.lanes = {t.name: Lane(t, shared) for t in self.targets}
        self.ready.set()

    async def on_stop(self) -> None:
        for lane in self.lanes.values():
            lane.cancel()
        for lane in self.lanes.values():
            await lane.drain()
        if self._session is not None:
            await self._session.close()
        if self._ledger is not None:
            await self._ledger.close()

    async def _dead_letters(self, messages: Sequence[OutMessage]) -> None:
        await produce_all(self.app, messages)

    @mode.Service.task
    async def _release_on_rebalance(self) -> None:
        while not self.should_stop:
            if self.app.rebalancing and any(lane.pending for lane in self.lanes.values()):
                log.info("rebalance: abandoning deliveries in flight, their messages stay unacked for the next owner")
                for lane in self.lanes.values():
                    lane.cancel()
            await self.sleep(REBALANCE_CHECK_S)

    async def submit(self, event: faust.types.EventT) -> None:
        """Hand one notify message's deliveries to their lanes; never waits on a target."""
        if not self.targets:  # nothing to deliver to: not worth decoding (the stream acks it, a chunk of them)
            return
        event.message.incref()  # held past the stream's own ack, until every delivery of it has ended
        raw: bytes = event.value
        try:
            message = parse(raw)
        except InvalidAlert as exc:
            await self._unreadable(event, raw, str(exc))
            return
        chosen = targets_for(message, self.targets)
        if not chosen:
            event.ack()
            return
        hold = Hold(event, len(chosen))
        now = time.monotonic()
        for target in chosen:
            job = Job(Key.of(message, target.name), message, raw, hold.done, now)
            lane = self.lanes[target.name]
            if not lane.offer(job):
                await lane.overflow(job)

    async def _unreadable(self, event: faust.types.EventT, raw: bytes, reason: str) -> None:
        where = f"{event.message.partition}/{event.message.offset}"
        log.warning("notify message %s is not one (%s): to the dead-letter topic", where, reason)
        key = event.message.key.decode(errors="replace") if event.message.key else None
        letter = dead_letter_message(self.settings.notify_dlq_topic, "", key, raw, f"not a notify message: {reason}", 0)
        await produce_all(self.app, [letter])
        metrics.NOTIFY_DEAD_LETTERS.labels("", "unreadable").inc()
        event.ack()


def _exit(exc: BaseException) -> None:
    log.critical("publish: cannot record or dead-letter a delivery; exiting so a restart resends what has no "
                 "recorded success", exc_info=exc)  # fmt: skip
    logging.shutdown()
    os._exit(EXIT_CANNOT_RECORD)


def wire(app: AlertHistoryApp, settings: Settings) -> Publisher:
    """Register the publish agent on `app`: the notify topic's consumer, and the lanes' lifecycle."""
    try:
        targets = target_file.load(settings.rules_file, settings.public_url)
    except ConfigError as exc:
        log.critical("%s", exc)
        raise SystemExit(EXIT_CONFIG) from None
    publisher = Publisher(app, settings, targets, loop=app.loop)
    app.add_dependency(publisher)
    if targets:
        topic = app.topic(
            settings.notify_topic, key_serializer="raw", value_serializer="raw", partitions=settings.partitions
        )
    else:
        # Nothing to deliver: the messages are only acked, a fetched chunk at a time (app/faust_adapter.py), not
        # through Faust's per-message path, which cost the worker more CPU per message than anything it does
        # (docs/performance.md). With targets a message at a time: a chunk's hundreds of deliveries offered at
        # once overflowed a healthy target's lane where the per-message pace kept it under its queue.
        app.chunked_topics = app.chunked_topics | {settings.notify_topic}
        topic = app.topic(settings.notify_topic, schema=ChunkSchema(), partitions=settings.partitions)

    @app.agent(topic, name="alert-history-publish")
    async def run(stream: faust.StreamT) -> None:
        await publisher.ready.wait()
        async for event in stream.events():
            await publisher.submit(event)

    if targets:
        log.info("publishing to %s", ", ".join(f"{t.name} ({t.kind})" for t in targets))
    return publisher
