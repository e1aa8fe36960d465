"""Redis frozen, then killed, under webhook load: the history path does not use it and must not notice."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.agents.streams import drained
from tests.faults.load import WebhookLoad, verify

FROZEN_S = 8
AFTER_KILL_S = 5


async def test_redis_frozen_then_killed_leaves_the_history_path_alone(own_services, fault_workers, db) -> None:  # type: ignore[no-untyped-def]
    own = await own_services(redis=True)
    worker = fault_workers(own.endpoints)
    await worker.wait_ready()
    redis = own.stack.process("redis")
    async with WebhookLoad(worker.url) as load:
        await load.wait_accepted(100)
        with redis.frozen():
            before = load.accepted
            await asyncio.sleep(FROZEN_S)
            assert load.accepted > before, f"no alert accepted while Redis was frozen: {load.summary()}"
            ready = await _readyz(worker.url, worker.auth)
        redis.kill()
        before = load.accepted
        await asyncio.sleep(AFTER_KILL_S)
        assert load.accepted > before, f"no alert accepted once Redis was killed: {load.summary()}"
    await drained(db, worker)
    verdict = await verify(db, load, "redis frozen 8 s, then killed")
    verdict.assert_exactly_once()
    assert verdict.five_xx == 0 and set(verdict.statuses) == {202} and not verdict.errors, verdict.line()
    # Readiness reports Redis and does not wait on it: it is optional.
    status, body = ready
    assert status == 200 and body["checks"]["redis"] != "ok", body


async def _readyz(url: str, auth: dict[str, str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with (
        aiohttp.ClientSession(headers=auth) as http,
        http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(10)) as r,
    ):
        return r.status, await r.json()
