"""Load: a backlog produced onto a topic, and webhook bodies posted by concurrent (optionally paced) clients,
with freshness probes timing 2xx → stored. The alerts themselves come from `app.bench.stream`."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from app.bench.measure import pct, progress_bar
from app.bench.stream import alert_labels
from app.fingerprint import fingerprint
from app.services import Endpoints

PROBE_GIVE_UP_S = 30.0
PROBE_EVERY_S = 0.2
BATCH_ALERTS = 50  # alerts per webhook body, as Alertmanager groups them
_HEAD = b'{"version":"4","status":"firing","receiver":"bench","alerts":['
_JSON = {"Content-Type": "application/json"}


async def produce(
    ep: Endpoints, topic: str, messages: Iterable[tuple[bytes, bytes]], total: int | None = None
) -> float:
    """Produce the messages (a list, or any iterable of `total`); returns messages/s."""
    total = len(messages) if isinstance(messages, list) else total
    producer = AIOKafkaProducer(bootstrap_servers=ep.kafka_brokers, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    started = time.perf_counter()
    sent = 0
    try:
        with progress_bar(total or 0, "produce", "ev") as bar:
            it = iter(messages)
            while chunk := list(itertools.islice(it, 5000)):
                futures = [await producer.send(topic, value, key=key) for key, value in chunk]
                await asyncio.gather(*futures)
                bar.update(len(chunk))
                sent += len(chunk)
    finally:
        await producer.stop()
    return sent / (time.perf_counter() - started)


def distinct(n: int, run: str) -> Iterator[tuple[bytes, bytes]]:
    """`n` distinct fingerprints, one firing event each (the churn's stream)."""
    starts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    for k in range(n):
        labels = alert_labels(k, run)
        fp = fingerprint(labels)
        body = {"labels": labels, "startsAt": starts, "status": "firing", "fingerprint": fp}
        yield fp.encode(), orjson.dumps(body)


def webhook_bodies(stream: Iterator[bytes], alerts: int) -> list[tuple[int, bytes]]:
    """`alerts` of the stream in webhook bodies of BATCH_ALERTS: (alerts in it, body)."""
    batches = [list(itertools.islice(stream, min(BATCH_ALERTS, alerts - k))) for k in range(0, alerts, BATCH_ALERTS)]
    return [(len(b), _HEAD + b",".join(b) + b"]}") for b in batches]


@dataclass
class LoadResult:
    rate: float  # alerts/s accepted
    p99_ms: float | None
    freshness_p95_ms: float | None
    probes: int  # freshness samples


@dataclass
class _Clients:
    """Clients sharing one iterator of bodies: each body goes out once, from whichever client is free."""

    url: str
    bodies: Iterator[tuple[int, bytes]]
    interval_s: float  # between one client's bodies; 0: as fast as it goes
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    async def client(self, session: aiohttp.ClientSession) -> None:
        next_at = time.perf_counter()
        for n, body in self.bodies:
            if self.interval_s:
                next_at += self.interval_s
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            self.sent += n
            t = time.perf_counter()
            async with session.post(f"{self.url}/webhook", data=body, headers=_JSON) as r:
                if r.status != 202:
                    raise SystemExit(f"bench: webhook answered {r.status}: {await r.text()}")
            self.latencies_ms.append((time.perf_counter() - t) * 1000)


@dataclass
class _Probes:
    """A probe alert every PROBE_EVERY_S, timed from its 2xx until PostgreSQL holds it."""

    url: str
    db: asyncpg.Pool
    done: asyncio.Event = field(default_factory=asyncio.Event)
    pending: dict[str, float] = field(default_factory=dict)  # fingerprint of each probe not seen yet → sent at
    freshness_ms: list[float] = field(default_factory=list)

    async def send(self, session: aiohttp.ClientSession) -> None:
        labels = {"alertname": "FreshnessProbe", "probe": uuid.uuid4().hex[:12]}
        t = time.perf_counter()
        async with session.post(f"{self.url}/webhook", json={"version": "4", "alerts": [{"labels": labels}]}) as r:
            if r.status != 202:
                raise SystemExit(f"bench: webhook answered a probe {r.status}: {await r.text()}")
        self.pending[fingerprint(labels)] = t

    async def prober(self) -> None:
        # Whatever the backlog: waiting for the probe before to be seen would give a handful of samples exactly
        # when freshness is worst. Own session: never queued behind the load.
        async with aiohttp.ClientSession() as session:
            sends = []
            while not self.done.is_set():
                sends.append(asyncio.create_task(self.send(session)))
                await asyncio.sleep(PROBE_EVERY_S)
            await asyncio.gather(*sends)

    async def watcher(self, probing: asyncio.Task[Any]) -> None:
        # All unseen probes in one query, by fingerprint (the timeline's index): a containment query on labels
        # per probe loaded PostgreSQL more than the load being measured. /history sees a row at the same commit.
        while not (probing.done() and not self.pending):  # every probe sent, and seen or given up on
            if self.pending:
                rows = await self.db.fetch(
                    "SELECT DISTINCT fingerprint FROM alert_events WHERE fingerprint = ANY($1::text[]) "
                    "AND received_at > now() - interval '5 min'",
                    list(self.pending),
                )
                now = time.perf_counter()
                for (fp,) in rows:
                    self.freshness_ms.append((now - self.pending.pop(fp)) * 1000)
                for fp, t in list(self.pending.items()):
                    if now - t > PROBE_GIVE_UP_S:  # counted at PROBE_GIVE_UP_S: never seen must not drop out
                        self.freshness_ms.append(PROBE_GIVE_UP_S * 1000)
                        del self.pending[fp]
            await asyncio.sleep(0.01)


async def webhook_load(
    url: str,
    stream: Iterator[bytes],
    alerts: int,
    concurrency: int,
    db: asyncpg.Pool,
    rate: float | None = None,
    probe: bool = True,
) -> LoadResult:
    """`alerts` of the stream (alert objects) in webhook bodies from `concurrency` clients, as fast as they go
    or paced to `rate` alerts/s in all; meanwhile (`probe`) freshness probes."""
    # Made before the clock starts, as the e2e backlog is: the load generator shares the machine with what it
    # measures, and making the stream as it went took CPU from the bridge.
    bodies = iter(webhook_bodies(stream, alerts))
    clients = _Clients(url, bodies, concurrency * BATCH_ALERTS / rate if rate else 0.0)
    probes = _Probes(url, db)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        probing = asyncio.create_task(probes.prober() if probe else probes.done.wait())
        watching = asyncio.create_task(probes.watcher(probing) if probe else probes.done.wait())
        started = time.perf_counter()
        with progress_bar(alerts, "webhook", "alert") as bar:

            async def progress() -> None:
                while not probes.done.is_set():
                    bar.update(min(clients.sent, alerts) - bar.n)
                    await asyncio.sleep(0.2)

            ticker = asyncio.create_task(progress())
            await asyncio.gather(*(clients.client(session) for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            await asyncio.sleep(2)  # let the last probes land
            probes.done.set()
            await ticker
        await probing
        await watching
    fresh = probes.freshness_ms
    return LoadResult(clients.sent / elapsed, pct(clients.latencies_ms, 99), pct(fresh, 95), len(fresh))


async def steady_produce(
    ep: Endpoints, topic: str, messages: Iterator[tuple[bytes, bytes]], rate: float, stop: asyncio.Event
) -> tuple[int, float]:
    """Messages onto the topic at `rate` a second (a tenth each 0.1 s) until `stop`: (messages sent, seconds)."""
    producer = AIOKafkaProducer(bootstrap_servers=ep.kafka_brokers, acks="all", linger_ms=20)
    await producer.start()
    started = time.perf_counter()
    sent = 0
    try:
        while not stop.is_set():
            due = int(rate * (time.perf_counter() - started)) - sent
            for key, value in itertools.islice(messages, max(0, due)):
                await producer.send(topic, value, key=key)
                sent += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except TimeoutError:
                pass
        await producer.flush()
    finally:
        await producer.stop()
    return sent, time.perf_counter() - started
