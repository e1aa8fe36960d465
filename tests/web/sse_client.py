"""A test's client of `/events`: reads Server-Sent Events frames off a real HTTP response."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass
class Frame:
    id: str | None = None
    event: str = "message"
    data: Any = None
    comment: bool = False


@dataclass
class Stream:
    response: aiohttp.ClientResponse
    cursor: str | None = None  # the last SSE id seen
    frames: list[Frame] = field(default_factory=list)

    async def next_frame(self, timeout: float = 30) -> Frame:
        """The next frame (an event, a named event, or a heartbeat comment), remembering its id as the cursor."""
        frame = Frame()
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if frame.id is not None:
                        self.cursor = frame.id
                    self.frames.append(frame)
                    return frame
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    frame.comment = True
                elif name == "id":
                    frame.id = value
                elif name == "event":
                    frame.event = value
                elif name == "data":
                    frame.data = orjson.loads(value)

    async def events(self, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        """The next `n` events (data of `message` frames), skipping heartbeats."""
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(out) < n:
                frame = await self.next_frame(timeout)
                if frame.event == "message" and frame.data is not None:
                    out.append(frame.data)
        return out

    async def until(self, predicate: Any, timeout: float = 30) -> list[dict[str, Any]]:
        """Every event up to and including the first one `predicate` accepts."""
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next_frame(timeout)
                if frame.event == "message" and frame.data is not None:
                    out.append(frame.data)
                    if predicate(frame.data):
                        return out


@asynccontextmanager
async def open_stream(
    http: aiohttp.ClientSession, url: str, *, filter: str | None = None, last_event_id: str | None = None,
    cursor: str | None = None, headers: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:  # fmt: skip
    """An open stream whose first frame (the starting cursor) has been read: what is stored from now on arrives."""
    params = {k: v for k, v in (("filter", filter), ("cursor", cursor)) if v is not None}
    sent = dict(headers or {})
    if last_event_id is not None:
        sent["Last-Event-ID"] = last_event_id
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with http.get(f"{url}/events", params=params, headers=sent, timeout=timeout) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        stream = Stream(resp)
        first = await stream.next_frame()
        assert first.comment and first.id is not None, first
        yield stream
