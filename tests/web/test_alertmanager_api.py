"""Alertmanager API v2 compatibility: Prometheus-style POST, GET for amtool, status (/openapi.json: test_openapi.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.fingerprint import fingerprint
from tests.fixtures import Worker, eventually, unique


def _ts(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def prometheus_alert(labels: dict[str, str], ends_in: timedelta) -> dict[str, Any]:
    """What Prometheus posts to an Alertmanager: no status, endsAt a few evaluation intervals ahead."""
    return {
        "labels": labels,
        "annotations": {"summary": "from prometheus"},
        "startsAt": _ts(timedelta(minutes=-10)),
        "endsAt": _ts(ends_in),
        "generatorURL": "http://prometheus:9090/graph",
    }


async def _firing(http, worker: Worker, **params: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async with http.get(f"{worker.url}/api/v2/alerts", params=params) as r:
        body = await r.json()
        assert r.status == 200, body
        return body  # type: ignore[no-any-return]


async def _seed(http, worker: Worker, run: str) -> tuple[dict[str, str], dict[str, str]]:  # type: ignore[no-untyped-def]
    firing = {"alertname": "CpuHigh", "run": run, "severity": "critical"}
    resolved = {"alertname": "CpuHigh", "run": run, "severity": "warning"}
    body = [prometheus_alert(firing, timedelta(minutes=4)), prometheus_alert(resolved, timedelta(minutes=-1))]
    async with http.post(f"{worker.url}/api/v2/alerts", json=body) as r:
        assert r.status == 200, await r.text()

    async def stored() -> bool:
        async with http.get(f"{worker.url}/history", params={"filter": f'run="{run}"'}) as r:
            return len((await r.json())["items"]) == 2

    await eventually(stored, what="both alerts stored")
    return firing, resolved


async def test_get_alerts_lists_what_fires_now_in_alertmanager_shape(worker: Worker, http) -> None:
    run = unique()
    firing, _ = await _seed(http, worker, run)
    alerts = await _firing(http, worker, filter=f'run="{run}"')
    assert [a["fingerprint"] for a in alerts] == [fingerprint(firing)]
    alert = alerts[0]
    assert alert["labels"] == firing
    assert alert["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}
    assert alert["receivers"] == [{"name": "alert-history"}]
    for field in ("startsAt", "endsAt", "updatedAt"):
        assert datetime.fromisoformat(alert[field].replace("Z", "+00:00")).tzinfo is not None
    assert await _firing(http, worker, filter=f'run="{run}"', active="false") == []
    assert await _firing(http, worker, filter=f'{{run="{run}",severity!="critical"}}') == []
    assert len(await _firing(http, worker, filter=f'run="{run}"', receiver="alert-.*")) == 1
    assert await _firing(http, worker, filter=f'run="{run}"', receiver="pager") == []

    async with http.get(f"{worker.url}/api/v2/alerts", params={"active": "maybe"}) as r:
        assert r.status == 400 and "active" in (await r.json())["error"]


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool (Debian prometheus-alertmanager) not installed")
async def test_amtool_queries_us_unmodified(worker: Worker, http) -> None:
    run = unique()
    firing, _ = await _seed(http, worker, run)
    proc = await asyncio.create_subprocess_exec(
        "amtool", "alert", "query", f"--alertmanager.url={worker.url}", "-o", "json", f"run={run}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    alerts = json.loads(out)
    assert [(a["fingerprint"], a["labels"]["severity"]) for a in alerts] == [(fingerprint(firing), "critical")]

    proc = await asyncio.create_subprocess_exec(
        "amtool", "alert", "query", f"--alertmanager.url={worker.url}", f"run={run}", "severity=~crit.*",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "CpuHigh" in out.decode() and "from prometheus" in out.decode()


async def test_status_has_what_alertmanager_clients_require(worker: Worker, http) -> None:
    async with http.get(f"{worker.url}/api/v2/status") as r:
        status = await r.json()
    assert status["cluster"]["status"] in ("ready", "settling", "disabled")
    assert {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"} <= status["versionInfo"].keys()
    assert "original" in status["config"] and status["uptime"].endswith("Z")


async def test_writes_need_the_api_token_when_one_is_set(make_worker, http) -> None:  # type: ignore[no-untyped-def]
    token = "s3cret-" + "x" * 16
    secured = make_worker(api_token=token)
    await secured.wait_ready()
    body = [prometheus_alert({"alertname": "Token", "run": unique()}, timedelta(minutes=4))]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        async with http.post(f"{secured.url}/api/v2/alerts", json=body, headers=headers) as r:
            assert r.status == 401, headers
            assert "Authorization" in (await r.json())["error"]
    async with http.post(f"{secured.url}/api/v2/alerts", json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
    async with http.get(f"{secured.url}/api/v2/alerts") as r:  # reads stay open (no READ_TOKEN)
        assert r.status == 200
    secured.stop()
