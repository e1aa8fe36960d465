"""Redis stopped under the enrich agent (a test-owned Redis, frozen, then thawed): events are still stored and
classified, by the LLM, without the cache; once Redis answers again the cache serves the alert's next event."""

from __future__ import annotations

import aiohttp

from app.bench.llm import FakeLLM
from tests.agents.enrich.conftest import decided, send
from tests.fixtures import Worker, eventually, free_port, unique


async def test_redis_stopped_then_back_under_the_enrich_agent(own_services, fault_workers) -> None:  # type: ignore[no-untyped-def]
    llm = FakeLLM()
    await llm.start(free_port())
    try:
        own = await own_services(redis=True)
        worker = fault_workers(own.endpoints, llm_url=llm.url, llm_model="m", llm_timeout=5)
        await worker.wait_ready()
        redis = own.stack.process("redis")
        async with aiohttp.ClientSession() as http:
            assert await _sources(http, worker, llm, "before") == ["llm", "cache"]
            with redis.frozen():
                # No cache: each event asks the LLM, and is stored and classified all the same.
                assert await _sources(http, worker, llm, "frozen") == ["llm", "llm"]

            async def cache_again() -> bool:
                return await _sources(http, worker, llm, "back") == ["llm", "cache"]

            await eventually(cache_again, timeout=60, what="the cache used again once Redis answers")
        log = worker.log_path.read_text(errors="replace")
        assert log.count("Redis unreachable") == 1, "going down is logged once"
        assert log.count("Redis reachable again") == 1, "coming back is logged once"
    finally:
        await llm.stop()


async def _sources(http: aiohttp.ClientSession, worker: Worker, llm: FakeLLM, case: str) -> list[str]:
    """A new alert's firing, then its resolve: each one's classification source."""
    run = unique()
    labels = {"alertname": "RedisDrill", "run": run, "case": case}
    await send(http, worker, labels)
    await decided(http, worker, f'run="{run}"')
    await send(http, worker, labels, status="resolved")
    events = await decided(http, worker, f'run="{run}"', n=2)
    return [e["classification"]["source"] for e in events]
