"""A test standing in for systemd or Kubernetes: restarts a worker whenever it exits, and keeps each exit."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from tests.fixtures import Worker, eventually

RESTART_DELAY_S = 1.0


@dataclass(frozen=True)
class Exit:
    code: int
    at: float  # time.monotonic()


class Supervisor:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.exits: list[Exit] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Supervisor:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def first_exit(self, timeout: float) -> Exit:
        async def exited() -> Exit | None:
            return self.exits[0] if self.exits else None

        return await eventually(exited, timeout=timeout, what=f"the worker on {self.worker.url} to exit")

    async def _watch(self) -> None:
        proc = self.worker.proc
        while True:
            assert proc is not None
            code = proc.poll()
            if code is not None:
                self.exits.append(Exit(code, time.monotonic()))
                await asyncio.sleep(RESTART_DELAY_S)
                self.worker.start()
                proc = self.worker.proc
            await asyncio.sleep(0.2)


@dataclass(frozen=True)
class Read:
    path: str
    status: int | None  # None: no answer within the client's timeout
    seconds: float


async def read(url: str, path: str, timeout_s: float) -> Read:
    """One GET, timed; a hang is cut at `timeout_s` and reported as no answer."""
    began = time.monotonic()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.get(f"{url}{path}") as resp,
        ):
            await resp.read()
            return Read(path, resp.status, time.monotonic() - began)
    except TimeoutError:
        return Read(path, None, time.monotonic() - began)
