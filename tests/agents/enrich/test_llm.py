"""The enrich agent with an LLM (a real local chat-completions server, app/bench/llm.py): answers stored with source
llm, the alert's next event from the Redis cache, every failure falling back on the rules and counted, the history
path never waiting, transparent mode asking nothing, the API key nowhere but its header, replays changing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from app.bench.llm import FakeLLM
from tests.agents.enrich.conftest import decided, metric, notified, send, set_mode
from tests.agents.streams import produce, read_topic
from tests.fixtures import Worker, eventually, unique
from tests.web.test_webhook import history

API_KEY = "sk-test-" + "9f3c2a7e5b1d4c8a" * 2
LLM_TIMEOUT_S = 5


@pytest.fixture(scope="module")
async def asking(make_worker: Callable[..., Worker], llm: FakeLLM) -> Worker:
    worker = make_worker(llm_url=llm.url, llm_model="test-model", llm_api_key=API_KEY, llm_timeout=LLM_TIMEOUT_S,
                         log_level="DEBUG")  # fmt: skip
    await worker.wait_ready()
    return worker


async def test_an_llm_answer_is_stored_and_the_alert_next_event_comes_from_the_cache(asking: Worker, llm, http) -> None:  # type: ignore[no-untyped-def]
    run = unique()
    labels = {"alertname": "CacheMe", "run": run, "llm_severity": "critical", "instance": "h1:9100"}
    await send(http, asking, labels)
    (firing,) = await decided(http, asking, f'run="{run}"')
    assert firing["classification"] == {
        "category": "llm-cacheme", "severity": "critical", "confidence": 0.9, "source": "llm", "model": "test-model",
        "reasoning": "CacheMe looks like something to look at", "recommendations": ["look at CacheMe"],
    }  # fmt: skip
    await send(http, asking, labels, status="resolved")
    # The same alert on another instance is the same alert to the cache (instance is a volatile label).
    await send(http, asking, {**labels, "instance": "h2:9100"})
    events = await decided(http, asking, f'run="{run}"', n=3)
    assert [e["classification"]["source"] for e in events] == ["llm", "cache", "cache"]
    assert all(e["classification"]["category"] == "llm-cacheme" for e in events)
    assert llm.asked_about("run", run) == 1
    request = next(r for r in llm.requests if run in r["messages"][-1]["content"])
    assert request["tool_choice"] == {"type": "function", "function": {"name": "classify_alert"}}
    assert request["tools"][0]["function"]["parameters"]["properties"]["severity"]["enum"] == [
        "critical", "warning", "info", "noise"
    ]  # fmt: skip
    assert await metric(http, asking, "alert_history_classification_cache_total", result="hit") >= 2


async def test_llm_failures_fall_back_on_the_rules_counted_while_history_goes_on(asking: Worker, llm, http) -> None:  # type: ignore[no-untyped-def]
    outcomes = {"LLM500": "server_error", "LLMMalformed": "malformed", "LLMOutOfSchema": "invalid",
                "LLMSlow": "timeout"}  # fmt: skip
    before = {o: await metric(http, asking, "alert_history_llm_requests_total", outcome=o) for o in outcomes.values()}
    run = unique()
    for name in outcomes:
        await send(http, asking, {"alertname": name, "run": run, "severity": "warning"})
    meanwhile = unique()
    await send(http, asking, {"alertname": "Meanwhile", "run": meanwhile})

    async def stored_while_waiting() -> bool:
        # The LLM is holding the slow alert's classification; the history path stores new rows all the same.
        if not await history(http, asking, filter=f'run="{meanwhile}"'):
            return False
        slow = await history(http, asking, filter=f'{{run="{run}",alertname="LLMSlow"}}')
        assert slow and slow[0]["classification"] is None, "classified before the next alert was even stored"
        return True

    await eventually(stored_while_waiting, what="the next alert stored while the LLM keeps one waiting")
    for e in await decided(http, asking, f'run="{run}"', n=4):
        name = e["labels"]["alertname"]
        assert e["classification"]["source"] == "rules", name
        assert e["classification"]["severity"] == "warning" and e["classification"]["model"] is None, name
    after = {o: await metric(http, asking, "alert_history_llm_requests_total", outcome=o) for o in outcomes.values()}
    assert {o: after[o] - before[o] for o in after} == {o: 1 for o in outcomes.values()}
    assert await metric(http, asking, "alert_history_llm_request_seconds_count") >= 1


async def test_transparent_mode_makes_no_llm_request(asking: Worker, llm, http) -> None:  # type: ignore[no-untyped-def]
    await set_mode(http, asking, "transparent")
    try:
        probes = unique()

        async def applied() -> bool:  # alerts until one is published in the new mode: the agent has it
            await send(http, asking, {"alertname": "Probe", "run": probes, "probe": unique()})
            return any(m["mode"] == "transparent" for m in await notified(asking, probes))

        await eventually(applied, timeout=30, what="the agent in transparent mode")
        run = unique()
        await send(http, asking, {"alertname": "NotAsked", "run": run, "severity": "critical"})
        await send(http, asking, {"alertname": "NotAskedEither", "run": run})
        events = await decided(http, asking, f'run="{run}"', n=2)
        assert [e["classification"]["source"] for e in events] == ["rules", "rules"]
        assert llm.asked_about("run", run) == 0
        sent = await eventually(lambda: _n(notified(asking, run), 2), what="both published")
        assert all(m["mode"] == "transparent" and m["event"]["classification"] is None for m in sent)
    finally:
        await set_mode(http, asking, "enriched")


async def test_replaying_the_events_topic_changes_nothing(asking: Worker, llm, http, db) -> None:  # type: ignore[no-untyped-def]
    run = unique()
    labels = {"alertname": "ReplayMe", "run": run}
    await send(http, asking, labels)
    await send(http, asking, labels, status="resolved")
    rows = await decided(http, asking, f'run="{run}"', n=2)
    published = await eventually(lambda: _n(notified(asking, run), 2), what="both published")
    asked = len(llm.requests)
    events = [m for m in await read_topic(asking.endpoints.kafka_brokers, f"{asking.topic}-events")
              if run.encode() in m.value]  # fmt: skip
    assert len(events) == 2
    replayed = await metric(http, asking, "alert_history_enrich_skipped_total", reason="replayed")
    await produce(asking, [(m.key, m.value) for m in events], topic=f"{asking.topic}-events")

    async def skipped() -> bool:
        return await metric(http, asking, "alert_history_enrich_skipped_total", reason="replayed") >= replayed + 2

    await eventually(skipped, what="the agent to pass over the replayed events")
    assert await decided(http, asking, f'run="{run}"', n=2) == rows
    assert len(llm.requests) == asked
    assert await notified(asking, run) == published


async def test_the_api_key_goes_in_its_header_and_nowhere_else(asking: Worker, llm, http) -> None:  # type: ignore[no-untyped-def]
    run = unique()
    await send(http, asking, {"alertname": "KeyCheck", "run": run})
    await decided(http, asking, f'run="{run}"')
    assert llm.authorization and set(llm.authorization) == {f"Bearer {API_KEY}"}
    assert all(API_KEY not in orjson.dumps(r).decode() for r in llm.requests)  # not in any prompt either
    await asyncio.sleep(0)  # the worker's log is written by the worker; read what it holds now
    log = asking.log_path.read_text(errors="replace")
    assert "DEBUG" in log and "LLM classification failed" in log  # the failures above were logged, at DEBUG level
    assert API_KEY not in log and API_KEY[8:] not in log
    async with http.get(f"{asking.url}/metrics") as r:
        assert API_KEY not in await r.text()


async def _n(messages, n: int):  # type: ignore[no-untyped-def]
    got = await messages
    assert len(got) <= n, got
    return got if len(got) == n else None
