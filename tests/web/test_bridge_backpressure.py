"""Back-pressure at the bridge, on a Kafka broker of the test's own that it freezes (SIGSTOP) and thaws: a 503 comes
after ALERT_HISTORY_PRODUCE_TIMEOUT with Retry-After; past ALERT_HISTORY_PRODUCE_MAX_WAITING waiting requests the
next is refused at once, not queued; the request that waited is accepted once Kafka answers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from app.services import Endpoints, ServiceStack
from app.topics import end_offsets
from tests.fixtures import Worker, eventually, unique
from tests.web.test_webhook import am_alert, webhook


@pytest.fixture
async def own_kafka(endpoints: Endpoints, tmp_path: Path) -> AsyncIterator[ServiceStack]:
    """A Kafka broker for this test alone (the session's serves every other test); PostgreSQL is the session's."""
    stack = ServiceStack(workdir=tmp_path / "kafka", database_url=endpoints.database_url, want_redis=False)
    await asyncio.to_thread(stack.start)
    try:
        yield stack
    finally:
        freeze(stack, signal.SIGCONT)  # a stopped JVM would not take its SIGTERM
        await asyncio.to_thread(stack.stop)


def freeze(stack: ServiceStack, sig: int = signal.SIGSTOP) -> None:
    (kafka, _), *_ = stack._procs  # the broker this stack started (its own process group)
    os.killpg(kafka.pid, sig)


async def post(http: aiohttp.ClientSession, node: Worker, run: str) -> tuple[int, str, str | None]:
    alert = am_alert({"alertname": "BackPressure", "run": run})
    async with http.post(f"{node.url}/webhook", json=webhook([alert])) as r:
        return r.status, await r.text(), r.headers.get("Retry-After")


async def test_a_frozen_kafka_gets_503_with_retry_after_and_no_queue(
    own_kafka: ServiceStack, make_worker: Callable[..., Worker], http: aiohttp.ClientSession
) -> None:
    brokers = own_kafka.kafka_brokers
    # Web nodes: the bridge, no pipeline. One that waits 2 s; one that lets a single request wait.
    short = make_worker(kafka_brokers=brokers, pipeline_enabled=False, produce_timeout=2)
    single = make_worker(kafka_brokers=brokers, pipeline_enabled=False, produce_timeout=120, produce_max_waiting=1)
    try:
        await asyncio.gather(short.wait_ready(partitions=False), single.wait_ready(partitions=False))
        for node in (short, single):
            assert (await post(http, node, unique()))[0] == 202  # Kafka answers: metadata and connections are up
        before = sum((await end_offsets(brokers, single.topic)).values())

        freeze(own_kafka)
        status, text, retry_after = await post(http, short, unique())
        assert (status, retry_after) == (503, "2"), text
        assert "Kafka did not acknowledge within 2 s" in text and "Send the whole request again" in text

        # Two at once: whichever is first waits on the frozen broker, the other is refused without waiting.
        both = [asyncio.create_task(post(http, single, unique())) for _ in range(2)]

        async def one_answered() -> list[asyncio.Task[tuple[int, str, str | None]]]:
            return [t for t in both if t.done()]

        [refused] = await eventually(one_answered, what="one of two requests answered at once")
        status, text, retry_after = refused.result()
        assert (status, retry_after) == (503, "1"), text
        assert "1 requests already wait on it" in text and "nothing of this one was produced" in text
        [waiting] = [t for t in both if t is not refused]
        assert not waiting.done()

        freeze(own_kafka, signal.SIGCONT)
        status, text, _ = await asyncio.wait_for(waiting, 120)
        assert status == 202, text  # it waited, and Kafka took it: nothing lost
        assert sum((await end_offsets(brokers, single.topic)).values()) >= before + 1
    finally:
        freeze(own_kafka, signal.SIGCONT)
        short.stop()
        single.stop()
