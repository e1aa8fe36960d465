"""`/history?format=ndjson`: every match, one JSON object a line, read through a server-side cursor in one snapshot.

How a stream ends: after its last event; or early, with one last line `{"error": "...", "next": cursor|null}`
(an event line never has an `error` key) when it reached NDJSON_MAX_SECONDS or PostgreSQL failed mid-stream;
`next` given as `cursor=` resumes it after the last event sent. A client that takes no data for
NDJSON_WRITE_TIMEOUT seconds is dropped (its connection closed), so it never holds a snapshot open for long.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from app.events import from_row as event_json
from web import params
from web.api import DatabaseUnavailable

log = logging.getLogger(__name__)
BATCH_ROWS = 500


class ClientGone(Exception):
    """The client went away or stopped reading: nothing more can be sent to it."""


@dataclass
class NdjsonStream:
    request: web.Request
    max_seconds: float
    write_timeout_s: float

    async def run(
        self, snapshot: AbstractAsyncContextManager[asyncpg.Connection], sql: str, args: list[Any]
    ) -> web.StreamResponse:
        """Headers go out once the first batch is read: until then a failure is still an error status."""
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_seconds
        last: Any = None
        end: str | None = None
        try:
            async with snapshot as conn:
                cursor = await conn.cursor(sql, *args)
                while True:
                    rows = await cursor.fetch(BATCH_ROWS)
                    if not resp.prepared:
                        await resp.prepare(self.request)
                    if not rows:
                        break
                    if last is not None and loop.time() >= deadline:
                        end = (
                            f"stream ended at its {self.max_seconds:g} s limit (ALERT_HISTORY_NDJSON_MAX_SECONDS); "
                            "resume with cursor=<next>"
                        )
                        break
                    await self._send(resp, b"".join(orjson.dumps(event_json(r)) + b"\n" for r in rows))
                    last = rows[-1]
        except (asyncpg.exceptions.QueryCanceledError, DatabaseUnavailable) as exc:
            if not resp.prepared:
                raise  # still an error status (web/api.py maps it)
            end = f"stream ended early: {exc}; resume with cursor=<next>"
        except ClientGone as exc:
            return self._drop(resp, exc)
        try:
            if end is not None:
                nxt = params.encode_cursor(last["received_at"], last["id"]) if last is not None else None
                await self._send(resp, orjson.dumps({"error": end, "next": nxt}) + b"\n")
            await self._send(resp, None)
        except ClientGone as exc:
            return self._drop(resp, exc)
        return resp

    async def _send(self, resp: web.StreamResponse, data: bytes | None) -> None:
        """`data`, or the response's end when None, within the write timeout."""
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await (resp.write(data) if data is not None else resp.write_eof())
        except TimeoutError:
            raise ClientGone(
                f"took no data for {self.write_timeout_s:g} s (ALERT_HISTORY_NDJSON_WRITE_TIMEOUT)"
            ) from None
        except ConnectionError as exc:
            raise ClientGone(f"went away ({exc})") from None

    def _drop(self, resp: web.StreamResponse, exc: ClientGone) -> web.StreamResponse:
        log.info("ndjson stream to %s dropped: the client %s", self.request.remote, exc)
        if self.request.transport is not None:
            self.request.transport.abort()
        return resp
