"""Fixtures and helpers of the enrich tests: the local LLM server, the notify topic, the rows as classified."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from app.bench.llm import FakeLLM
from tests.agents.streams import read_topic
from tests.fixtures import Worker, eventually, free_port
from tests.web.test_webhook import am_alert, history, webhook


@pytest.fixture(scope="module")
async def llm() -> AsyncIterator[FakeLLM]:
    """A local chat-completions server answering classify_alert tool calls (app/bench/llm.py), for a module."""
    server = FakeLLM()
    await server.start(free_port())
    yield server
    await server.stop()


async def send(http: aiohttp.ClientSession, worker: Worker, labels: dict[str, str], status: str = "firing",
               starts: str = "2026-11-24T10:00:00Z", **annotations: str) -> dict[str, Any]:  # fmt: skip
    """One alert through the worker's webhook; the alert as sent."""
    ends = {"ends": "2026-11-24T10:05:00Z"} if status == "resolved" else {}
    alert = am_alert(labels, status=status, starts=starts, **ends)
    alert["annotations"] = annotations
    async with http.post(f"{worker.url}/webhook", json=webhook([alert], status), headers=worker.auth) as r:
        assert r.status == 202, await r.text()
    return alert


async def decided(http: aiohttp.ClientSession, worker: Worker, matcher: str, n: int = 1) -> list[dict[str, Any]]:
    """The `n` events matching `matcher`, once the enrich agent has decided each (classification and filter),
    oldest first."""

    async def all_decided() -> list[dict[str, Any]] | None:
        items = await history(http, worker, filter=matcher)
        done = len(items) == n and all(i["classification"] and i["filter"] for i in items)
        return list(reversed(items)) if done else None

    return await eventually(all_decided, timeout=30, what=f"{n} events of {matcher} classified and filtered")


async def notified(worker: Worker, run: str) -> list[dict[str, Any]]:
    """The notify topic's messages about events labelled run=`run`, in order."""
    messages = await read_topic(worker.endpoints.kafka_brokers, f"{worker.topic}-notify")
    return [orjson.loads(m.value) for m in messages if f'"run":"{run}"'.encode() in m.value]


async def metric(http: aiohttp.ClientSession, worker: Worker, name: str, **labels: str) -> float:
    """One sample of the worker's /metrics (0 when absent)."""
    async with http.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.split()[-1])
    return 0.0


async def set_mode(http: aiohttp.ClientSession, worker: Worker, mode: str) -> dict[str, Any]:
    async with http.put(f"{worker.url}/enrichment/mode", json={"mode": mode}, headers=worker.auth) as r:
        assert r.status == 200, await r.text()
        return await r.json()  # type: ignore[no-any-return]
