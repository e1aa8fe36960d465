"""The fetch loop's delivery (in place when it does not wait, through Faust's wait_first when it does), gaps, and
the ack of a chunk of records."""

from __future__ import annotations

import asyncio

import mode
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP, ConsumerMessage
from mode.utils.locks import Event

from app.faust_adapter import Consumer, RecordChunk, Started, gaps


class Flow(mode.Service):
    """What Consumer.deliver uses of a consumer: wait_first, and the flag a rebalance sets."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = Event()


async def test_started_continues_where_the_coroutine_paused() -> None:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    steps = []

    async def delivery() -> int:
        steps.append("before")
        got = await fut
        await asyncio.sleep(0)  # a bare yield after resuming
        steps.append("after")
        return got + 1

    coro = delivery()
    pending = coro.send(None)
    assert pending is fut and steps == ["before"]
    task = asyncio.ensure_future(Started(coro, pending))
    await asyncio.sleep(0)
    assert not task.done()
    fut.set_result(41)
    assert await task == 42
    assert steps == ["before", "after"]


async def test_started_propagates_errors_and_cancellation_into_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()

    async def failing() -> None:
        await fut
        raise ValueError("bad message")

    coro = failing()
    task = asyncio.ensure_future(Started(coro, coro.send(None)))
    fut.set_result(0)
    with pytest.raises(ValueError, match="bad message"):
        await task

    cleaned = []
    waiting: asyncio.Future[int] = loop.create_future()

    async def cancelled() -> None:
        try:
            await waiting
        finally:
            cleaned.append(True)

    coro2 = cancelled()
    task2 = asyncio.ensure_future(Started(coro2, coro2.send(None)))
    await asyncio.sleep(0)
    task2.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task2
    assert cleaned == [True]


async def test_deliver_in_place_waiting_and_suspended() -> None:
    flow = Flow()
    await flow.start()
    try:
        delivered = []

        async def quick() -> None:
            delivered.append("quick")

        await Consumer.deliver(flow, quick())  # type: ignore[arg-type]
        assert delivered == ["quick"]

        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def full_buffer() -> None:
            await room
            delivered.append("after room")

        asyncio.get_running_loop().call_later(0.01, room.set_result, None)
        await Consumer.deliver(flow, full_buffer())  # type: ignore[arg-type]
        assert delivered == ["quick", "after room"]

        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        interrupted = []

        async def stuck() -> None:
            try:
                await never
            except asyncio.CancelledError:
                interrupted.append(True)
                raise

        asyncio.get_running_loop().call_later(0.01, flow.suspend_flow.set)
        await asyncio.wait_for(Consumer.deliver(flow, stuck()), 5)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert interrupted == [True]  # a rebalance stops a waiting delivery, as in Faust's loop
    finally:
        await flow.stop()


def _records(*offsets: int) -> list[ConsumerRecord]:
    return [ConsumerRecord("alerts", 0, o, 1_000 + o, 1, None, b"{}", None, 0, 2, ()) for o in offsets]


def test_gaps_before_and_inside_a_chunk() -> None:
    assert gaps(_records(5, 6, 7), after=4) == []
    assert gaps(_records(5, 6, 7), after=None) == []  # nothing delivered before: no gap to mark
    assert gaps(_records(8, 9), after=4) == [(5, 7)]
    assert gaps(_records(5, 7, 8, 12), after=4) == [(6, 6), (9, 11)]


class Acks:
    """The ack bookkeeping of a Faust consumer, which Consumer.ack updates for a whole chunk."""

    def __init__(self, committed: int | None) -> None:
        tp = TP("alerts", 0)
        self._committed_offset = {tp: committed}
        self._acked_index: dict[TP, set[int]] = {tp: set()}
        self._acked: dict[TP, list[int]] = {tp: []}
        self._unacked_messages: set[object] = set()
        self._n_acked = 0
        self._waiting_for_ack = None


def _chunk_message(records: list[ConsumerRecord]) -> ConsumerMessage:
    last = records[-1]
    return ConsumerMessage(
        "alerts", 0, last.offset, last.timestamp / 1000, 1, None, None, RecordChunk(records), None, 0, 0,
        TP("alerts", 0),
    )  # fmt: skip


def test_acking_a_chunk_acks_each_of_its_offsets_once() -> None:
    acks = Acks(committed=3)
    message = _chunk_message(_records(2, 3, 4, 6))  # 2 is below the committed offset
    acks._unacked_messages.add(message)
    assert Consumer.ack(acks, message) is True  # type: ignore[arg-type]
    tp = TP("alerts", 0)
    assert acks._acked[tp] == [3, 4, 6] and acks._acked_index[tp] == {3, 4, 6}
    assert acks._n_acked == 3 and message not in acks._unacked_messages
    assert Consumer.ack(acks, message) is False  # type: ignore[arg-type]
    assert acks._acked[tp] == [3, 4, 6] and acks._n_acked == 3


def _app(tmp_path):  # type: ignore[no-untyped-def]
    from app.faust_app import create_app
    from app.settings import load_settings

    settings = load_settings(
        kafka_brokers="127.0.0.1:9", database_url="postgresql://nobody@127.0.0.1:9/none", data_dir=str(tmp_path)
    )
    app = create_app(settings)
    return app, [app.pipeline.history.states.table]


def test_the_installed_faust_has_every_private_attribute_relied_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app import faust_adapter

    app, tables = _app(tmp_path)
    faust_adapter.check(app, tables)  # what every worker runs at start


def test_a_faust_without_one_fails_the_check_naming_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app import faust_adapter

    app, tables = _app(tmp_path)
    del app.consumer._acked_index  # as a Faust that renamed it would be
    with pytest.raises(faust_adapter.FaustIncompatible) as err:
        faust_adapter.check(app, tables)
    assert "faust.transport.drivers.aiokafka.Consumer._acked_index" in str(err.value)
    assert "install that version" in str(err.value)
