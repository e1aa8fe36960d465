"""Server-Sent Events of the events topic, the pure part: resume cursors, frames, and one client's bounded queue.

A cursor is a position in the events topic: for each partition, the next offset not yet considered for the
client. Every event sent carries, as its SSE `id`, the cursor right after it; heartbeats carry the cursor too
when it moved (events the filter skipped move it). Resuming from a cursor reads each partition from its offset,
so a client that reconnects with `Last-Event-ID` gets every matching event it missed, once, on any node.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.matchers import Matcher

CURSOR_VERSION = "v1"
MAX_OFFSET = 2**63 - 1
_B36 = re.compile(r"^[0-9a-z]{1,13}$", re.ASCII)


class CursorError(ValueError):
    """A cursor this service did not write (or wrote for a topic with another partition count)."""


def encode_cursor(position: Sequence[int]) -> str:
    """`v1.` then each partition's next offset in base 36, in partition order: compact and URL-safe."""
    return ".".join([CURSOR_VERSION, *(_b36(o) for o in position)])


def decode_cursor(raw: str, partitions: int) -> list[int]:
    """The offsets of a cursor for a topic of `partitions` partitions; CursorError naming what is wrong."""
    parts = raw.strip().split(".")
    if len(raw) > 16 * (partitions + 1) or parts[0] != CURSOR_VERSION or not all(_B36.match(p) for p in parts[1:]):
        raise CursorError("not a cursor this service returned (an SSE id of /events)")
    if len(parts) - 1 != partitions:
        raise CursorError(f"it has {len(parts) - 1} partitions, the events topic {partitions}: not of this topic")
    offsets = [int(p, 36) for p in parts[1:]]
    if any(o > MAX_OFFSET for o in offsets):
        raise CursorError("an offset past Kafka's largest")
    return offsets


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def event_frame(data: bytes, position: Sequence[int]) -> bytes:
    """One SSE message: the event's JSON (one line) and the cursor after it."""
    return b"id: " + encode_cursor(position).encode() + b"\ndata: " + data + b"\n\n"


def named_frame(name: str, data: bytes, position: Sequence[int] | None = None) -> bytes:
    cursor = b"" if position is None else b"id: " + encode_cursor(position).encode() + b"\n"
    return cursor + b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def heartbeat_frame(position: Sequence[int] | None) -> bytes:
    """A comment (proxies see traffic) and, when given, the cursor (an id with no data dispatches no event)."""
    cursor = b"" if position is None else b"id: " + encode_cursor(position).encode() + b"\n"
    return b": heartbeat\n" + cursor + b"\n"


def one_line(value: bytes) -> bool:
    """Whether a JSON value can go in one `data:` line as it is (orjson writes none with a line break)."""
    return b"\n" not in value and b"\r" not in value


def matches(matchers: Sequence[Matcher], event: Any) -> bool:
    labels = event.get("labels") if isinstance(event, dict) else None
    return isinstance(labels, dict) and all(m.matches(labels) for m in matchers)


@dataclass(eq=False)
class Subscriber:
    """One /events client, fed by the node's topic reader: its filter, its position and a queue bounded in bytes.

    The reader calls `offer` for every record, in order per partition; a record below `floor` (the client's
    resume cursor, when it is ahead of the reader) was delivered before and is skipped. A queue past
    `budget_bytes` drops the client (`on_drop` closes its connection): it reconnects with its last cursor and
    loses nothing, and no one else waits for it.
    """

    matchers: Sequence[Matcher]
    position: list[int]
    floor: list[int]
    budget_bytes: int
    on_drop: Callable[[str], None] = lambda reason: None
    queue: deque[tuple[bytes, tuple[int, ...]]] = field(default_factory=deque)
    queued_bytes: int = 0
    dropped: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, partition: int, offset: int, event: Any, data: bytes) -> None:
        if self.dropped is not None or offset < self.floor[partition]:
            return
        self.position[partition] = offset + 1
        if not matches(self.matchers, event):
            return
        if self.queued_bytes + len(data) > self.budget_bytes:
            self.drop("slow")
            return
        self.queue.append((data, tuple(self.position)))
        self.queued_bytes += len(data)
        self.wake.set()

    def take(self) -> tuple[bytes, tuple[int, ...]] | None:
        if not self.queue:
            return None
        item = self.queue.popleft()
        self.queued_bytes -= len(item[0])
        return item

    def drop(self, reason: str) -> None:
        """Stop feeding this client and free its queue at once."""
        if self.dropped is None:
            self.dropped = reason
            self.queue.clear()
            self.queued_bytes = 0
            self.wake.set()
            self.on_drop(reason)

    async def wait(self, timeout_s: float) -> bool:
        """Until an event is queued or the client dropped (True), or `timeout_s` passed (False)."""
        if self.queue or self.dropped:
            return True
        self.wake.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self.wake.wait()
        except TimeoutError:
            return False
        return True
