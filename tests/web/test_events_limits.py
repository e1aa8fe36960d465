"""`/events` limits on a web node of its own: a client that stops reading is dropped once its queue passes its
budget, while a reading client gets every event; the node's memory stays bounded whatever the topic carries; streams
beyond the per-node cap get a 429 with Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.fixtures import Worker, eventually, unique
from tests.web.sse_client import open_stream

BUDGET = 256 * 1024
EVENT_BYTES = 100_000
EVENTS = 400  # 40 MB through the node: 160 times a client's budget
PACE = 20
BLOB = "x" * EVENT_BYTES


@pytest.fixture(scope="module")
async def node(make_worker: Callable[..., Worker]) -> AsyncIterator[Worker]:
    worker = make_worker(pipeline_enabled=False, events_client_buffer=BUDGET, events_streams=3,
                         events_write_timeout=120)  # fmt: skip  # the drop below is the queue's, not the write's
    try:
        await worker.wait_ready(partitions=False)
        yield worker
    finally:
        await asyncio.to_thread(worker.stop)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def dropped(http: aiohttp.ClientSession, node: Worker, reason: str) -> float:
    async with http.get(f"{node.url}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(f'alert_history_event_stream_drops_total{{reason="{reason}"}}'):
                return float(line.split()[-1])
    return 0.0


async def test_a_client_that_stops_reading_is_dropped_and_the_node_memory_stays_bounded(
    node: Worker, http: aiohttp.ClientSession
) -> None:
    run = unique()
    # A client that reads the response head and then nothing.
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(f"GET /events?filter=run%3D%22{run}%22 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    before_drops = await dropped(http, node, "slow")

    async with open_stream(http, node.url, filter=f'run="{run}"') as reading:
        assert node.proc is not None
        rss_before = rss_bytes(node.proc.pid)
        producer = AIOKafkaProducer(bootstrap_servers=node.endpoints.kafka_brokers, max_request_size=2**20)
        await producer.start()
        got = []
        try:
            for i in range(EVENTS):  # events as the history agent publishes them, each 100 kB
                event = {"id": str(i), "fingerprint": f"{i:016x}", "status": "firing",
                         "labels": {"alertname": "Big", "run": run}, "annotations": {"blob": BLOB}}  # fmt: skip
                await producer.send(f"{node.topic}-events", orjson.dumps(event), key=event["fingerprint"].encode())
                if i % PACE == PACE - 1:  # the reading client keeps up; the silent one falls behind
                    await producer.flush()
                    got += await reading.events(PACE, timeout=60)
        finally:
            await producer.stop()
        rss_after = rss_bytes(node.proc.pid)

    assert sorted(int(e["id"]) for e in got) == list(range(EVENTS)), "the reading client got every event once"
    await eventually(lambda: _more(http, node, before_drops), what="the silent client dropped as slow")
    # The silent client got at most what the kernel buffered before its connection was closed.
    received = head
    try:
        async with asyncio.timeout(30):
            while chunk := await reader.read(1 << 20):
                received += chunk
    except ConnectionResetError:
        pass
    writer.close()
    assert len(received) < EVENTS * EVENT_BYTES / 2
    growth, passed = (rss_after - rss_before) / 2**20, EVENTS * EVENT_BYTES / 2**20
    assert growth < 30, f"the node grew {growth:.1f} MiB while {passed:.0f} MiB passed"
    print(f"events limits: {passed:.0f} MiB through the node, RSS {rss_before / 2**20:.0f} -> "
          f"{rss_after / 2**20:.0f} MiB, the silent client got {len(received) / 2**20:.1f} MiB before its drop")


async def _more(http: aiohttp.ClientSession, node: Worker, before: float) -> bool:
    return await dropped(http, node, "slow") > before


async def test_streams_beyond_the_cap_are_refused_with_retry_after(node: Worker, http: aiohttp.ClientSession) -> None:
    async def free() -> bool:
        async with http.get(f"{node.url}/metrics") as r:
            return "alert_history_event_streams 0.0" in await r.text()

    await eventually(free, what="no stream open on the node (a closed one is noticed within a second)")
    async with open_stream(http, node.url), open_stream(http, node.url), open_stream(http, node.url):
        async with http.get(f"{node.url}/events") as r:
            body = await r.json()
            assert r.status == 429, body
            assert "ALERT_HISTORY_EVENTS_STREAMS" in body["error"] and int(r.headers["Retry-After"]) > 0

    await eventually(free, what="the three streams closed on the node")
    async with open_stream(http, node.url):
        pass
