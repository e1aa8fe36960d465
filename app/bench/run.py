"""What one bench run's phases share: the services, the worker and web node, the stream, the results."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from app.bench.measure import wait_ready
from app.bench.proc import CpuMeter, Proc, listener_pid, postmaster_pid
from app.bench.report import Results
from app.bench.stream import generate
from app.services import Endpoints, free_port
from app.settings import ENV_PREFIX, Settings


@dataclass
class Run:
    args: argparse.Namespace
    ep: Endpoints
    workdir: Path
    db: asyncpg.Pool
    settings: Settings
    env: dict[str, str]  # a worker's settings; a phase's processes start from these
    port: int  # the worker's web port
    stream: Iterator[tuple[bytes, bytes]]  # the backlog first, then what the webhook phases send
    services: dict[str, int | None]  # pid of PostgreSQL's postmaster and Kafka's broker, where local
    res: Results = field(default_factory=Results)
    worker: Proc | None = None
    backlog: list[tuple[bytes, bytes]] = field(default_factory=list)  # e2e's messages, for the two workers
    rss: float | None = None  # the worker's, right after it drained the backlog

    @classmethod
    async def open(cls, args: argparse.Namespace, ep: Endpoints, workdir: Path) -> Run:
        from app.migrate import migrate
        from app.topics import ensure_topics

        run = uuid.uuid4().hex[:8]
        settings = Settings(kafka_brokers=ep.kafka_brokers, database_url=ep.database_url, topic=f"bench-{run}",
                            partitions=args.partitions)  # fmt: skip
        await migrate(ep.database_url)
        await ensure_topics(settings)
        port = free_port()
        env = {
            f"{ENV_PREFIX}KAFKA_BROKERS": ep.kafka_brokers, f"{ENV_PREFIX}DATABASE_URL": ep.database_url,
            f"{ENV_PREFIX}TOPIC": settings.topic, f"{ENV_PREFIX}PARTITIONS": str(args.partitions),
            f"{ENV_PREFIX}APP_ID": f"bench-{run}", f"{ENV_PREFIX}DATA_DIR": str(workdir / "state"),
            f"{ENV_PREFIX}WEB_PORT": str(port), f"{ENV_PREFIX}LOG_LEVEL": "WARNING", f"{ENV_PREFIX}LOG_FORMAT": "text",
        }  # fmt: skip
        db = await asyncpg.create_pool(ep.database_url, min_size=1, max_size=4)
        kafka = next(filter(None, map(listener_pid, ep.kafka_brokers.split(","))), None)
        services = {"postgres": await postmaster_pid(db, ep.database_url), "kafka": kafka}
        stream = generate(2**62, args.fingerprints, run)
        return cls(args, ep, workdir, db, settings, env, port, stream, services)

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        await self.db.close()

    @property
    def url(self) -> str:
        """The worker's web API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def e2e_rate(self) -> float:
        return self.res.summary.get("e2e_alerts_per_s") or 0.0

    def start_worker(self) -> Proc:
        self.worker = Proc("app.cli", self.env, self.workdir / "worker.log")
        return self.worker

    def alerts(self) -> Iterator[bytes]:
        """The stream goes on past the backlog: the same alerts, resent, transitioning, flapping."""
        return (value for _, value in self.stream)

    def cpu_meter(self, **procs: Proc) -> CpuMeter:
        """CPU time of these processes and of PostgreSQL (all its backends) and Kafka."""
        return CpuMeter({**{name: p.pid for name, p in procs.items()}, **self.services})

    async def side_topic(self, suffix: str) -> str:
        """A topic of its own for one phase (same partitions), named after the run's: created, and its name."""
        from app.topics import ensure_topics

        topic = f"{self.settings.topic}-{suffix}"
        await ensure_topics(self.settings.model_copy(update={"topic": topic}))
        return topic

    @asynccontextmanager
    async def web_node(
        self, log: str, topic: str | None = None, env: dict[str, str] | None = None
    ) -> AsyncIterator[tuple[Proc, str]]:
        """A web node for one phase (as deployed: the bridge and the reads, no partitions) onto the worker's topic
        or `topic`, with the worker's settings or `env`: the process, once ready, and its URL."""
        port = free_port()
        env = {**(env or self.env), f"{ENV_PREFIX}PIPELINE_ENABLED": "false", f"{ENV_PREFIX}WEB_PORT": str(port)}
        node = Proc("app.cli", {**env, **({f"{ENV_PREFIX}TOPIC": topic} if topic else {})}, self.workdir / log)
        try:
            await wait_ready(f"http://127.0.0.1:{port}", node)
            yield node, f"http://127.0.0.1:{port}"
        finally:
            node.stop()
