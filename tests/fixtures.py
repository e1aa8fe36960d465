"""Worker processes and HTTP helpers for tests that run the whole service on real Kafka/PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest

from app.migrate import migrate
from app.services import Endpoints, ServiceProcess

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 15, what: str = "condition") -> T:
    """Poll `check` until it returns a truthy value; fail with `what` and the last value on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass
class Worker:
    """One `alert-history worker` subprocess with its own settings."""

    endpoints: Endpoints
    workdir: Path
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"worker-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def topic(self) -> str:
        return self.env["ALERT_HISTORY_TOPIC"]

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header that lets a test read from this worker (its read token, else its API token)."""
        token = self.env.get("ALERT_HISTORY_READ_TOKEN") or self.env.get("ALERT_HISTORY_API_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def start(self) -> None:
        env = {**os.environ, **self.env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_ready(self, timeout: float = 120, partitions: bool = True) -> None:
        """Until /readyz is 200 and (unless `partitions` is False: a web node) the worker owns partitions."""

        async def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{self.url}/readyz", headers=self.auth) as r:
                    body = await r.json()
                    owns = body["checks"].get("assigned_partitions", 0) > 0
                    return r.status == 200 and (owns or not partitions)
            except (aiohttp.ClientError, OSError):
                return False

        try:
            await eventually(ready, timeout=timeout, what=f"worker on {self.url} ready with partitions")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{self.tail()}") from None

    @property
    def process(self) -> ServiceProcess:
        """The running worker, to freeze or kill -9 as the embedded servers are."""
        assert self.proc is not None, "worker not started"
        return ServiceProcess("worker", 1, self.proc)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def worker_env(endpoints: Endpoints, workdir: Path, **settings: object) -> dict[str, str]:
    """Settings for an isolated pipeline: its own topic, consumer group and state directory."""
    run = uuid.uuid4().hex[:8]
    env = {
        "ALERT_HISTORY_KAFKA_BROKERS": endpoints.kafka_brokers,
        "ALERT_HISTORY_DATABASE_URL": endpoints.database_url,
        "ALERT_HISTORY_TOPIC": f"alerts-{run}",
        "ALERT_HISTORY_APP_ID": f"alert-history-{run}",
        "ALERT_HISTORY_DATA_DIR": str(workdir / "state"),
        "ALERT_HISTORY_LOG_FORMAT": "text",
        "ALERT_HISTORY_PARTITIONS": "4",
    }
    if endpoints.redis_url:
        env["ALERT_HISTORY_REDIS_URL"] = endpoints.redis_url
    env.update({f"ALERT_HISTORY_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture(scope="session")
def make_worker(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Worker]]:
    """Factory: make_worker(env=None, endpoints=None, **settings) → a started Worker (not yet waited for); `endpoints`
    other than the session's: a test's own services."""
    started: list[Worker] = []
    session = endpoints

    def make(env: dict[str, str] | None = None, endpoints: Endpoints | None = None, **settings: object) -> Worker:
        workdir = tmp_path_factory.mktemp("worker")
        ep = endpoints or session
        worker = Worker(ep, workdir, env or worker_env(ep, workdir, **settings), free_port())
        if env is not None:
            worker.env = {**env, **{f"ALERT_HISTORY_{k.upper()}": str(v) for k, v in settings.items()}}
            worker.env["ALERT_HISTORY_WEB_PORT"] = str(worker.port)
        worker.env["ALERT_HISTORY_WEB_PORT"] = str(worker.port)
        worker.start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
async def worker(make_worker: Callable[..., Worker]) -> Worker:
    """The shared worker most tests talk to; tests isolate themselves by unique label values."""
    w = make_worker()
    await w.wait_ready()
    return w


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
async def db(endpoints: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


def unique(prefix: str = "T") -> str:
    """A label value no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def scratch_database_url(endpoints: Endpoints, prefix: str) -> AsyncIterator[str]:
    """A migrated database of its own, dropped afterwards (its clients too): for tests that fill whole tables."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(endpoints.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = endpoints.database_url.rsplit("/", 1)[0] + "/" + name
        await migrate(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def scratch_database(endpoints: Endpoints, prefix: str) -> AsyncIterator[asyncpg.Connection]:
    """scratch_database_url, connected."""
    async with scratch_database_url(endpoints, prefix) as url:
        conn = await asyncpg.connect(url)
        try:
            yield conn
        finally:
            await conn.close()


# What the history sink writes: its rows, the episodes (migration 013) and /report's rollups (migration 012),
# emptied together, or the derived tables disagree with the rows.
HISTORY_TABLES = (
    "alert_events", "alerts", "sink_offsets", "alert_episodes", "report_counts", "report_counts_minute",
    "report_alert_periods", "report_alert_totals", "report_episodes", "report_resolve_repeats",
    "report_mttr_periods", "report_mttr_totals",
)  # fmt: skip


async def truncate_history(conn: asyncpg.Connection) -> None:
    """Empty the history and its rollups (a scratch database's: never the session's shared one)."""
    await conn.execute(f"TRUNCATE {', '.join(HISTORY_TABLES)}")
