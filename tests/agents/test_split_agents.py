"""ALERT_HISTORY_AGENTS: the history agent in one worker, enrich and publish in another (their own APP_ID), and
the pipeline is whole: the alert stored, classified, delivered. With the downstream worker stopped, history goes
on alone; started again, it takes up where it stopped."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.services import Endpoints
from tests.agents.publish.targets import TargetServer, rules_env
from tests.fixtures import Worker, eventually, unique
from tests.web.test_webhook import am_alert, history, webhook


async def test_history_and_downstream_agents_in_separate_workers(  # type: ignore[no-untyped-def]
    make_worker: Callable[..., Worker], endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory, http
) -> None:
    target = await TargetServer().start()
    try:
        targets = [{"name": "hook", "type": "webhook", "url": f"{target.url}/hook", "match": ['split="yes"']}]
        env = rules_env(endpoints, tmp_path_factory.mktemp("split"), targets)
        hist = make_worker(env={**env, "ALERT_HISTORY_AGENTS": "history"})
        down_env = {**env, "ALERT_HISTORY_AGENTS": "enrich,publish",
                    "ALERT_HISTORY_APP_ID": env["ALERT_HISTORY_APP_ID"] + "-downstream",
                    "ALERT_HISTORY_DATA_DIR": env["ALERT_HISTORY_DATA_DIR"] + "-downstream"}  # fmt: skip
        down = make_worker(env=down_env)
        await hist.wait_ready()
        await down.wait_ready()

        async def send(run: str) -> None:
            alert = am_alert({"alertname": "SplitAgents", "split": "yes", "run": run, "severity": "critical"})
            async with http.post(f"{hist.url}/webhook", json=webhook([alert])) as r:
                assert r.status == 202, await r.text()

        async def classified(run: str) -> list[dict[str, object]] | None:
            items = await history(http, hist, filter=f'run="{run}"')
            return items if len(items) == 1 and items[0]["classification"] is not None else None

        def delivered(run: str) -> int:
            return sum(1 for r in target.received if r.body["alerts"][0]["labels"]["run"] == run)

        first = unique()
        await send(first)
        items = await eventually(lambda: classified(first), timeout=60, what="the event classified by the other worker")
        assert items[0]["classification"]["source"] == "rules"  # type: ignore[index]
        await eventually(lambda: _ready(delivered(first) == 1), timeout=60, what="the delivery by the other worker")

        # The downstream worker stopped: the history worker stores on its own, nothing is classified meanwhile.
        assert down.stop() == 0
        second = unique()
        await send(second)
        stored = await eventually(lambda: _one(history(http, hist, filter=f'run="{second}"')), what="stored alone")
        assert stored[0]["classification"] is None
        assert delivered(second) == 0

        # Started again, it reads the events topic from its committed offset: the event is classified and sent.
        down = make_worker(env=down_env)
        await down.wait_ready()
        await eventually(lambda: classified(second), timeout=90, what="the backlog classified after the restart")
        await eventually(lambda: _ready(delivered(second) == 1), timeout=60, what="the backlog delivered")
        assert delivered(first) == 1  # nothing sent twice
    finally:
        await target.stop()


async def _ready(value: bool) -> bool:
    return value


async def _one(items_coro):  # type: ignore[no-untyped-def]
    items = await items_coro
    return items if len(items) == 1 else None
