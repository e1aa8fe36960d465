"""Faust's aiokafka consumer, delivering each fetched message without four asyncio tasks around it.

Faust's fetch loop (`Consumer._drain_messages`) hands every message to the conductor through
`wait_first(callback(message), suspend_flow.wait())`: it wraps the delivery, the suspend flag and the
consumer's stopped and crashed flags in four tasks, waits for the first, and cancels the other three. That is
~19 us of a worker's CPU per message, though delivery almost never waits (it only puts the event on the
stream's queue). Here the delivery runs first in place; only when it really waits (flow control, a full
buffer) does it go through `wait_first`, so a rebalance's `suspend_flow` still interrupts it as in Faust.
The loop is otherwise Faust 0.15's (read offsets, gaps, commit_every); a Faust outside the tested range
keeps Faust's own loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka

log = logging.getLogger(__name__)

TESTED_FAUST = ("0.15.",)


class Started:
    """Awaitable that continues a coroutine already stepped once (it yielded `pending`): `yield from` for a
    coroutine that has begun, so the task that awaits this one sees the same futures."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # cancelled while waiting: the coroutine gets to clean up
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class Consumer(aiokafka.Consumer):
    async def deliver(self, delivery: Coroutine[Any, Any, Any]) -> None:
        try:
            pending = delivery.send(None)
        except StopIteration:
            return  # the usual case: queued on the stream without waiting
        await self.wait_first(Started(delivery, pending), self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the worker's fetch loop
        if not faust.__version__.startswith(TESTED_FAUST):
            log.warning("Faust %s is outside the tested range: using its own fetch loop", faust.__version__)
            return await super()._drain_messages(fetcher)
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                await asyncio.sleep(0)  # getmany can return at once in a loop: let others run
                if self.should_stop:
                    break
                async for tp, message in fetched:
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    read = get_read_offset(tp)
                    if read is not None and offset < read:
                        continue  # already delivered (a seek back during a rebalance)
                    if read and offset - read > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, read + 1, offset)  # compacted or transaction markers
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await self.deliver(callback(message))
                    set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)
