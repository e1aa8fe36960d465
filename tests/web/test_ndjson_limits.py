"""`/history?format=ndjson` limits on a web node of their own: a stream's duration (it ends with an error line
whose cursor resumes it), the number of streams per node (429 with Retry-After), and a client that stops
reading (dropped at the write timeout, its snapshot released)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from app.services import Endpoints
from tests.fixtures import Worker, eventually, scratch_database_url
from web.stream import BATCH_ROWS

EVENTS = 2 * BATCH_ROWS + 200
ANNOTATION_BYTES = 20_000  # a first batch of 10 MB: more than the socket buffers of a client that reads nothing
WRITE_TIMEOUT = 3.0

SEED = """
INSERT INTO alert_events (id, fingerprint, status, labels, annotations, starts_at, received_at, last_seen_at,
                          severity, decision)
SELECT i, lpad(to_hex(i), 16, '0'), 'firing', jsonb_build_object('alertname', 'Big', 'i', i::text),
       jsonb_build_object('description', repeat('x', $3)), t, t, t, 'warning', 'first_seen'
FROM (SELECT i, $2::timestamptz - i * interval '1 second' AS t FROM generate_series(1, $1) AS i) AS s
"""


@pytest.fixture(scope="module")
async def node(endpoints: Endpoints, make_worker: Callable[..., Worker]) -> AsyncIterator[Worker]:
    """A web node on a database of its own holding EVENTS large events (ids 1.. newest first); one stream at a
    time, each ended after its first batch (NDJSON_MAX_SECONDS is a millisecond)."""
    async with scratch_database_url(endpoints, "ndjson") as url:
        conn = await asyncpg.connect(url)
        try:
            now = datetime.now(UTC)
            for days in (-1, 0, 1):
                await conn.execute("SELECT alert_events_ensure_partition($1)", (now + timedelta(days=days)).date())
            await conn.execute(SEED, EVENTS, now, ANNOTATION_BYTES)
        finally:
            await conn.close()
        worker = make_worker(
            pipeline_enabled=False,
            database_url=url,
            ndjson_streams=1,
            ndjson_max_seconds=0.001,
            ndjson_write_timeout=WRITE_TIMEOUT,
        )
        try:
            await worker.wait_ready(partitions=False)
            yield worker
        finally:
            worker.stop()


async def stream(
    http: aiohttp.ClientSession, node: Worker, cursor: str | None = None, timeout: float = 15
) -> list[dict[str, Any]]:
    """Every line of one stream, once the node has a free stream slot."""
    params = {"format": "ndjson", **({"cursor": cursor} if cursor else {})}

    async def attempt() -> list[dict[str, Any]] | None:
        async with http.get(f"{node.url}/history", params=params) as r:
            if r.status == 429:
                return None
            assert r.status == 200, await r.text()
            return [orjson.loads(line) for line in (await r.read()).splitlines()]

    return await eventually(attempt, timeout=timeout, what="a stream on a free slot")


async def test_a_stream_past_its_duration_ends_with_an_error_line_that_resumes_it(
    node: Worker, http: aiohttp.ClientSession
) -> None:
    ids: list[str] = []
    ends: list[dict[str, Any]] = []
    cursor = None
    while True:
        lines = await stream(http, node, cursor)
        events = [line for line in lines if "error" not in line]
        assert all("error" not in line for line in lines[:-1]), "only the last line may be an error"
        ids += [e["id"] for e in events]
        if "error" not in lines[-1]:
            break
        ends.append(lines[-1])
        cursor = lines[-1]["next"]
    assert ids == [str(i) for i in range(1, EVENTS + 1)], "every event once, newest first"
    assert len(ends) == EVENTS // BATCH_ROWS
    assert all("NDJSON_MAX_SECONDS" in end["error"] for end in ends), ends


async def test_a_client_that_stops_reading_is_dropped_and_its_slot_and_snapshot_freed(
    node: Worker, http: aiohttp.ClientSession
) -> None:
    # A client that reads the headers and then nothing.
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"GET /history?format=ndjson HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head

    # It holds the node's one stream slot: another stream is refused, and told when to retry.
    async with http.get(f"{node.url}/history", params={"format": "ndjson"}) as r:
        body = await r.json()
        assert r.status == 429, body
        assert "format" in body["error"] and "NDJSON_STREAMS" in body["error"], body
        assert int(r.headers["Retry-After"]) > 0

    # Only a drop at the write timeout frees the slot (the client still reads nothing): a new stream is served.
    lines = await stream(http, node, timeout=WRITE_TIMEOUT + 15)
    assert len(lines) == BATCH_ROWS + 1 and "NDJSON_MAX_SECONDS" in lines[-1]["error"]

    # The dropped client gets what the kernel had buffered, then the end of a connection, not of a response.
    received = head
    try:
        async with asyncio.timeout(30):
            while chunk := await reader.read(1 << 20):
                received += chunk
    except ConnectionResetError:
        pass
    writer.close()
    assert not received.endswith(b"0\r\n\r\n"), "the stream ended as if complete"
    assert len(received) < BATCH_ROWS * ANNOTATION_BYTES

    # Its snapshot was released: no transaction is open on the node's database but this query's own.
    conn = await asyncpg.connect(node.env["ALERT_HISTORY_DATABASE_URL"])
    try:
        open_tx = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL"
        assert await conn.fetchval(open_tx) == 1
    finally:
        await conn.close()
