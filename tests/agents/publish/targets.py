"""Targets the publish tests deliver to: real local aiohttp servers that record every request and answer as told;
notify messages made as the enrich agent makes them; a worker with a rules file; the dead-letter topic read back."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web
from aiokafka import AIOKafkaProducer

from app.services import Endpoints
from tests.agents.streams import read_topic
from tests.fixtures import REPO, Worker, free_port, unique, worker_env

# Event ids of a topic code no real topic of the session has, so the tests' deliveries never meet the pipeline's.
_CODE = random.Random().randrange(4000, 8000)
_OFFSETS = itertools.count(1)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when it arrived


@dataclass
class Answer:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    hold_s: float = 0.0  # answer only after this long (a slow target)


class TargetServer:
    """A target on 127.0.0.1: records each request; answers from `script` first, then `default`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.script: deque[Answer] = deque()
        self.default = Answer()
        self.echo = False  # answer 400 with everything the request carried (path, headers, body)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.received.append(Received(request.path_qs, dict(request.headers), orjson.loads(raw), time.monotonic()))
        if self.echo:
            return web.Response(status=400, text=f"bad request to {request.path_qs} {dict(request.headers)} {raw!r}")
        answer = self.script.popleft() if self.script else self.default
        if answer.hold_s:
            await asyncio.sleep(answer.hold_s)
        return web.Response(status=answer.status, text=answer.body, headers=answer.headers)

    async def start(self) -> TargetServer:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)  # a held request is cut
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def events(self, key: Callable[[Any], str]) -> list[str]:
        """What each request delivered, by `key` of its body (the event id, or status), in arrival order."""
        return [key(r.body) for r in self.received]


def event_id(partition: int = 0) -> str:
    return str((_CODE << 50) | (partition << 40) | next(_OFFSETS))


def notify(
    labels: dict[str, str], status: str = "firing", *, fingerprint: str | None = None, id: str | None = None,
    starts: str = "2026-11-24T10:00:00.000Z", ends: str | None = None, annotations: dict[str, str] | None = None,
    mode: str = "transparent", classification: dict[str, Any] | None = None, recommendations: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    """A notify message as the enrich agent produces it (CONTRACTS.md)."""
    fp = fingerprint or unique("fp")
    event = {
        "id": id or event_id(), "fingerprint": fp, "status": status, "labels": labels,
        "annotations": annotations if annotations is not None else {"summary": f"{labels.get('alertname')} on fire"},
        "startsAt": starts, "endsAt": ends, "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "receivedAt": starts, "lastSeenAt": starts, "duplicates": 0, "flapping": False,
        "severity": labels.get("severity", "none"), "classification": classification,
        "filter": {"rule": None, "action": "allow"},
    }  # fmt: skip
    message: dict[str, Any] = {"event": event, "mode": mode, "filter": {"rule": None, "action": "allow"}}
    if recommendations:
        message["recommendations"] = list(recommendations)
    return message


def resolved(firing: dict[str, Any], ends: str = "2026-11-24T10:05:00.000Z") -> dict[str, Any]:
    """The resolve of a firing notify message: same fingerprint and startsAt, a later event id."""
    event = {**firing["event"], "id": event_id(), "status": "resolved", "endsAt": ends}
    return {**firing, "event": event}


async def produce_notify(brokers: str, topic: str, messages: Sequence[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all")
    await producer.start()
    try:
        for m in messages:
            await producer.send_and_wait(topic, orjson.dumps(m), key=m["event"]["fingerprint"].encode())
    finally:
        await producer.stop()


async def dead_letters(worker: Worker) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """The notify dead-letter topic: (headers, the notify message) of each, in topic order."""
    out = []
    for m in await read_topic(worker.endpoints.kafka_brokers, f"{worker.topic}-notify-dlq"):
        out.append(({k: v.decode() for k, v in m.headers.items()}, orjson.loads(m.value)))
    return out


def rules_env(
    endpoints: Endpoints, workdir: Path, targets: list[dict[str, Any]], secrets: dict[str, str] | None = None,
    **settings: object,
) -> dict[str, str]:  # fmt: skip
    """A worker's environment with a rules file of these targets, and the secret variables they name."""
    rules = workdir / f"rules-{unique()}.yml"
    rules.write_text(yaml.safe_dump({"targets": targets}))
    env = worker_env(endpoints, workdir, rules_file=rules, **settings)
    env.update(secrets or {})
    return env


@dataclass
class Ran:
    returncode: int | None
    stdout: str
    stderr: str


async def replay_cli(env: dict[str, str], *args: str) -> Ran:
    """`alert-history dlq replay …` with a worker's settings, as an operator runs it (the loop, and so the test's
    target servers, keep running meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "dlq", "replay", *args, cwd=REPO, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    return Ran(proc.returncode, out.decode(), err.decode())


async def ledger(db: Any, event_ids: Sequence[str], target: str) -> dict[str, tuple[str, int]]:
    """event id → (outcome, attempts) of the deliveries table."""
    rows = await db.fetch(
        "SELECT event_id, outcome, attempts FROM deliveries WHERE event_id = ANY($1::bigint[]) AND target = $2",
        [int(i) for i in event_ids], target,
    )  # fmt: skip
    return {str(r["event_id"]): (r["outcome"], r["attempts"]) for r in rows}
