"""`alert-history bench`: every goal of the Performance issue measured in one run, with a naive baseline.

Phases, each on the same embedded (or ALERT_HISTORY_*) services:
  produce  - the generated stream onto a fresh topic (a backlog)
  e2e      - a real worker drains the backlog: Kafka → dedup → PostgreSQL, alerts/s and worker RSS
  naive    - the per-event baseline agent on the same backlog, same machine, same run
  webhook  - concurrent POST /webhook batches of 50 (rate, p99): the bridge alone, then into the worker's topic
             with freshness probes (2xx → in /history)
  queries  - /history (matcher + 24 h, limit 100) and /report (30 days) on ≥1M seeded events
The last line printed is exactly `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from app.bench.stream import alert_labels, generate
from app.fingerprint import fingerprint
from app.services import Endpoints, ServiceStack, free_port
from app.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[2]
PROBE_GIVE_UP_S = 30.0
PROBE_EVERY_S = 0.2


@dataclass
class Results:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # measure, value, goal, verdict
    summary: dict[str, float | None] = field(default_factory=dict)

    def add(self, key: str, label: str, value: float | None, unit: str, goal: str, ok: bool | None) -> None:
        self.summary[key] = None if value is None else round(value, 1)
        shown = "n/a" if value is None else f"{value:,.1f} {unit}"
        self.rows.append((label, shown, goal, "" if ok is None else ("ok" if ok else "MISSED")))


def progress_bar(total: int, desc: str, unit: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=1)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process (the worker is one process)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Proc:
    """A worker (or the naive agent) as a subprocess with its own settings and log file."""

    def __init__(self, module: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "worker", *(["--loglevel", "warn"] if module != "app.cli" else [])],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise SystemExit(f"bench: {self.proc.args} exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def poll(
    check: Callable[[], Awaitable[int]], total: int, desc: str, proc: Proc, timeout_s: float
) -> list[tuple[float, int]]:
    """Sample progress until `total` is reached; returns (time, count) samples."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout_s
    with tqdm(total=total, desc=desc, unit="ev", file=sys.stderr, dynamic_ncols=True, mininterval=1) as bar:
        while time.monotonic() < deadline:
            proc.check()
            n = await check()
            samples.append((time.monotonic(), n))
            bar.update(n - bar.n)
            if n >= total:
                return samples
            await asyncio.sleep(0.2)
    raise SystemExit(f"bench: {desc} did not finish in {timeout_s:.0f}s ({samples[-1][1]} of {total})")


def stored(db: asyncpg.Pool, topic: str) -> Callable[[], Awaitable[int]]:
    """Messages of `topic` whose effect PostgreSQL holds (the sink's next offsets, summed)."""

    async def count() -> int:
        sql = "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE topic = $1"
        return int(await db.fetchval(sql, topic))

    return count


async def wait_drained(brokers: str, db: asyncpg.Pool, topic: str, worker: Proc, timeout_s: float = 600) -> None:
    """Until the worker has stored everything on the topic (the backlog a previous phase left)."""
    from app.topics import end_offsets

    total = sum((await end_offsets(brokers, topic)).values())
    await poll(stored(db, topic), total, "drain", worker, timeout_s)


def sustained_rate(samples: list[tuple[float, int]]) -> float:
    """From the first progress to the last: start-up and recovery are not throughput."""
    first = next((i for i, (_, n) in enumerate(samples) if n > 0), 0)
    if first == len(samples) - 1:  # all of it between two samples: from the sample before
        first = max(first - 1, 0)
    (t0, n0), (t1, n1) = samples[first], samples[-1]
    return (n1 - n0) / max(t1 - t0, 1e-9)


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


async def webhook_load(
    url: str,
    stream: Iterator[bytes],
    alerts: int,
    concurrency: int,
    db: asyncpg.Pool,
    rate: float | None = None,
    probe: bool = True,
) -> dict[str, Any]:
    """`alerts` of the stream (alert objects) in webhook bodies of 50 from `concurrency` clients, as fast as
    they go or paced to `rate` alerts/s in all; meanwhile (`probe`) probes time 2xx → visible in /history."""
    latencies: list[float] = []
    freshness: list[float] = []
    sent = 0
    done = asyncio.Event()
    headers = {"Content-Type": "application/json"}

    # Generated before the clock starts, as the e2e backlog is: the load generator shares the machine, and
    # making the stream as it went (11 µs an alert) took a fifth of a core at 20k/s from what was measured.
    head = b'{"version":"4","status":"firing","receiver":"bench","alerts":['
    batches = [list(itertools.islice(stream, min(50, alerts - k))) for k in range(0, alerts, 50)]
    bodies = iter([(len(b), head + b",".join(b) + b"]}") for b in batches])

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        interval = concurrency * 50 / rate if rate else 0.0  # seconds between one client's batches
        next_at = time.perf_counter()
        for n, body in bodies:  # shared: each body goes out once, from whichever client is free
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            sent += n
            t = time.perf_counter()
            async with session.post(f"{url}/webhook", data=body, headers=headers) as r:
                if r.status != 202:
                    raise SystemExit(f"bench: webhook answered {r.status}: {await r.text()}")
            latencies.append((time.perf_counter() - t) * 1000)

    pending: dict[str, float] = {}  # fingerprint of each probe not seen yet → when it was sent

    async def send_probe(session: aiohttp.ClientSession) -> None:
        labels = {"alertname": "FreshnessProbe", "probe": uuid.uuid4().hex[:12]}
        t = time.perf_counter()
        async with session.post(f"{url}/webhook", json={"version": "4", "alerts": [{"labels": labels}]}) as r:
            assert r.status == 202
        pending[fingerprint(labels)] = t

    async def prober() -> None:
        # A probe every PROBE_EVERY_S whatever the backlog: one that waited for the one before to be seen would
        # give a handful of samples exactly when freshness is worst. Own session: never queued behind the load.
        async with aiohttp.ClientSession() as session:
            sends = []
            while not done.is_set():
                sends.append(asyncio.create_task(send_probe(session)))
                await asyncio.sleep(PROBE_EVERY_S)
            await asyncio.gather(*sends)

    async def watcher() -> None:
        # All unseen probes in one query, by fingerprint (the timeline's index): a containment query on labels
        # per probe loaded PostgreSQL more than the load being measured. /history sees a row at the same commit.
        while not (probing.done() and not pending):  # every probe sent, and seen or given up on
            if pending:
                rows = await db.fetch(
                    "SELECT DISTINCT fingerprint FROM alert_events WHERE fingerprint = ANY($1::text[]) "
                    "AND received_at > now() - interval '5 min'",
                    list(pending),
                )
                now = time.perf_counter()
                for (fp,) in rows:
                    freshness.append((now - pending.pop(fp)) * 1000)
                for fp, t in list(pending.items()):
                    if now - t > PROBE_GIVE_UP_S:  # counted at PROBE_GIVE_UP_S: never seen must not drop out
                        freshness.append(PROBE_GIVE_UP_S * 1000)
                        del pending[fp]
            await asyncio.sleep(0.01)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        probing = asyncio.create_task(prober() if probe else done.wait())
        watching = asyncio.create_task(watcher() if probe else done.wait())
        started = time.perf_counter()
        with progress_bar(alerts, "webhook", "alert") as bar:

            async def progress() -> None:
                while not done.is_set():
                    bar.update(min(sent, alerts) - bar.n)
                    await asyncio.sleep(0.2)

            ticker = asyncio.create_task(progress())
            await asyncio.gather(*(client(session) for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            await asyncio.sleep(2)  # let the last probes land
            done.set()
            await ticker
        await probing
        await watching
    return {
        "rate": sent / elapsed,
        "p99": pct(latencies, 99),
        "freshness_p95": pct(freshness, 95),
        "probes": len(freshness),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def timed_gets(url: str, params: list[dict[str, str]]) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as session:
        for p in params:
            t = time.perf_counter()
            async with session.get(url, params=p) as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"bench: GET {url} {p} answered {r.status}")
            out.append((time.perf_counter() - t) * 1000)
    return out


@dataclass
class Run:
    """What the phases share: the services, one worker and its settings, and the generated stream."""

    args: argparse.Namespace
    ep: Endpoints
    workdir: Path
    db: asyncpg.Pool
    settings: Settings
    env: dict[str, str]
    port: int
    stream: Iterator[tuple[bytes, bytes]]  # the backlog first, then what the webhook phases send
    res: Results = field(default_factory=Results)
    worker: Proc | None = None
    rss: float | None = None  # the worker's, right after it drained the backlog

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_worker(self) -> Proc:
        self.worker = Proc("app.cli", self.env, self.workdir / "worker.log")
        return self.worker

    def alerts(self) -> Iterator[bytes]:
        """The stream goes on past the backlog: the same alerts, resent, transitioning, flapping."""
        return (value for _, value in self.stream)


async def bench(args: argparse.Namespace, ep: Endpoints, workdir: Path) -> Results:
    from app.migrate import migrate
    from app.topics import ensure_topics

    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_brokers=ep.kafka_brokers, database_url=ep.database_url, topic=f"bench-{run}", partitions=args.partitions
    )  # type: ignore[call-arg]
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
    r = Run(args, ep, workdir, db, settings, env, port, generate(2**62, args.fingerprints, run))
    try:
        messages = await e2e_phase(r)
        await naive_phase(r)
        two = await scale_out(ep, settings, messages, env, workdir, db)
        del messages
        e2e = r.res.summary["e2e_alerts_per_s"] or 0.0
        r.res.add("e2e_two_workers_alerts_per_s", "e2e, 2 workers in one group", two, "alerts/s", "", None)
        r.res.add("scale_out", "2 workers / 1 worker", two / e2e if e2e else None, "x", "", None)
        await webhook_phase(r)
        await queries_phase(r)
        if args.churn:
            r.worker.stop()  # type: ignore[union-attr]  # alone on the machine, like the e2e worker was
            await churn_phase(r)
    finally:
        if r.worker is not None:
            r.worker.stop()
        await db.close()
    return r.res


async def e2e_phase(r: Run) -> list[tuple[bytes, bytes]]:
    """The backlog onto the topic, then one worker drains it: alerts/s and the worker's RSS."""
    print(f"bench: {r.args.events:,} events over {r.args.fingerprints:,} fingerprints, topic {r.settings.topic}",
          file=sys.stderr)  # fmt: skip
    messages = list(itertools.islice(r.stream, r.args.events))
    produce_rate = await produce(r.ep, r.settings.topic, messages)
    r.res.add("produce_alerts_per_s", "backlog produce (aiokafka, acks=all)", produce_rate, "alerts/s", "", None)
    worker = r.start_worker()
    samples = await poll(stored(r.db, r.settings.topic), r.args.events, "e2e", worker, timeout_s=900)
    e2e = sustained_rate(samples)
    r.rss = rss_mb(worker.proc.pid)
    r.res.add("e2e_alerts_per_s", "e2e Kafka → dedup → PostgreSQL, 1 worker", e2e, "alerts/s", "≥ 20,000",
              e2e >= 20_000)  # fmt: skip
    return messages


async def naive_phase(r: Run) -> None:
    """The per-event baseline on the same backlog, alone on the machine as the worker was; then the worker again."""
    assert r.worker is not None
    r.worker.stop()
    naive = Proc("app.bench.naive", r.env, r.workdir / "naive.log")
    try:

        async def naive_rows() -> int:
            exists = await r.db.fetchval("SELECT to_regclass('naive_events') IS NOT NULL")
            return int(await r.db.fetchval("SELECT count(*) FROM naive_events")) if exists else 0

        target = min(r.args.events, r.args.naive_events)
        samples = await poll(naive_rows, target, "naive", naive, timeout_s=900)
    finally:
        naive.stop()
    await r.db.execute("DROP TABLE IF EXISTS naive_events")
    naive_rate = sustained_rate(samples)
    r.res.add("naive_alerts_per_s", "naive baseline: per-event agent, 1 INSERT each", naive_rate, "alerts/s", "", None)
    e2e = r.res.summary["e2e_alerts_per_s"] or 0.0
    ratio = e2e / naive_rate if naive_rate else None
    r.res.add("e2e_vs_naive", "e2e / naive", ratio, "x", ">= 10x", ratio is not None and ratio >= 10)
    await wait_ready(r.url, r.start_worker())  # the same group and state: it carries on where it stopped


async def side_topic(settings: Settings, suffix: str) -> str:
    """A topic of its own for one phase (same partitions), named after the run's: created, and its name."""
    from app.topics import ensure_topics

    topic = f"{settings.topic}-{suffix}"
    await ensure_topics(settings.model_copy(update={"topic": topic}))
    return topic


async def webhook_phase(r: Run) -> None:
    """The bridge of a web node (as deployed: it takes no partitions), first alone: onto a topic of its own that
    no worker reads, so the figure is the bridge's and not the machine's two cores shared with a worker. Then
    the stream goes on through it into the worker's topic: as fast as 16 clients go, and paced at half the e2e
    rate, with freshness probes (2xx → stored) in both."""
    bridge_topic = await side_topic(r.settings, "bridge")
    alone = await _with_web_node(r, {f"{ENV_PREFIX}TOPIC": bridge_topic}, "web-node-alone.log", _bridge_alone)
    r.res.add("webhook_alerts_per_s", "webhook bridge alone, batches of 50", alone["rate"], "alerts/s", "≥ 20,000",
              alone["rate"] >= 20_000)  # fmt: skip
    r.res.add("webhook_p99_ms", "webhook bridge alone: p99 latency", alone["p99"], "ms", "< 100",
              alone["p99"] is not None and alone["p99"] < 100)  # fmt: skip
    await _with_web_node(r, {}, "web-node.log", _webhook_loads)


async def _with_web_node(
    r: Run, env: dict[str, str], log: str, load: Callable[[Run, str], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    port = free_port()
    env = {**r.env, **env, f"{ENV_PREFIX}PIPELINE_ENABLED": "false", f"{ENV_PREFIX}WEB_PORT": str(port)}
    node = Proc("app.cli", env, r.workdir / log)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", node)
        return await load(r, f"http://127.0.0.1:{port}")
    finally:
        node.stop()


async def _bridge_alone(r: Run, url: str) -> dict[str, Any]:
    # Alerts of a stream of their own (same shape: resends, transitions, flapping), so the worker's stream,
    # which the next loads continue, is left as it was. Nothing reads the topic: no freshness probes.
    own = (value for _, value in generate(2**62, r.args.fingerprints, f"{r.settings.topic}-bridge"))
    return await webhook_load(url, own, r.args.webhook_alerts, r.args.concurrency, r.db, probe=False)


async def _webhook_loads(r: Run, url: str) -> dict[str, Any]:
    hook = await webhook_load(url, r.alerts(), r.args.webhook_alerts, r.args.concurrency, r.db)
    r.res.add("webhook_stored_alerts_per_s", "webhook while the worker stores it (same 2 cores)", hook["rate"],
              "alerts/s", "", None)  # fmt: skip
    r.res.add("webhook_stored_p99_ms", "webhook while the worker stores it: p99", hook["p99"], "ms", "", None)
    fresh = hook["freshness_p95"]
    r.res.add("freshness_p95_ms", f"freshness p95, 2xx → stored ({hook['probes']} probes)", fresh, "ms", "< 1,000",
              fresh is not None and fresh < 1000)  # fmt: skip
    # The same, at a load one worker keeps up with: the latency of the pipeline itself, not of a backlog.
    paced_rate = round((r.res.summary["e2e_alerts_per_s"] or 0.0) / 2, -2) or 100
    assert r.worker is not None
    await wait_drained(r.ep.kafka_brokers, r.db, r.settings.topic, r.worker)
    paced_alerts = max(50, int(paced_rate * r.args.paced_seconds) // 50 * 50)
    paced = await webhook_load(url, r.alerts(), paced_alerts, r.args.concurrency, r.db, rate=paced_rate)
    r.res.add("freshness_paced_p95_ms", f"freshness p95 at {paced_rate:,.0f} alerts/s ({paced['probes']} probes)",
              paced["freshness_p95"], "ms", "", None)  # fmt: skip
    return hook


async def queries_phase(r: Run) -> None:
    """/history and /report on the events stored so far plus ≥1M seeded over 30 days."""
    from app.seed import seed_events

    print(f"bench: seeding {r.args.history_events:,} events over 30 days", file=sys.stderr)
    async with r.db.acquire() as conn:
        await seed_events(conn, r.args.history_events, days=30, now=datetime.now(UTC))
    assert r.worker is not None
    r.worker.check()
    history = await timed_gets(
        f"{r.url}/history",
        [{"filter": f'alertname="Alert{k % 200}"', "since": "-24h", "limit": "100"} for k in range(r.args.queries)],
    )
    r.res.add("history_p50_ms", "/history matcher + 24 h, limit 100: p50", pct(history, 50), "ms", "", None)
    r.res.add("history_p95_ms", "/history matcher + 24 h, limit 100: p95", pct(history, 95), "ms", "< 50",
              (pct(history, 95) or 1e9) < 50)  # fmt: skip
    report = await timed_gets(f"{r.url}/report", [{"since": "-30d", "bucket": "1d"}] * max(3, r.args.queries // 20))
    r.res.add("report_p50_ms", "/report 30 days: p50", pct(report, 50), "ms", "", None)
    r.res.add("report_p95_ms", "/report 30 days: p95", pct(report, 95), "ms", "", None)
    r.res.add("worker_rss_mb", f"worker RSS after e2e ({r.args.fingerprints:,} fingerprints)", r.rss, "MB", "< 512",
              r.rss is not None and r.rss < 512)  # fmt: skip


async def churn_phase(r: Run) -> None:
    c = await churn(r.ep, r.settings, r.env, r.workdir, r.db, r.args.churn)
    n, res = f"{r.args.churn:,}", r.res
    res.add("churn_rss_live_mb", f"worker RSS, {n} live fingerprints", c["rss_live_mb"], "MB", "< 512",
            c["rss_live_mb"] is not None and c["rss_live_mb"] < 512)  # fmt: skip
    res.add("churn_disk_live_mb", f"table on disk (RocksDB), {n} live", c["disk_live_mb"], "MB", "", None)
    res.add("churn_expired", "states expired after the windows passed", c["expired"], "", n,
            c["expired"] == r.args.churn)  # fmt: skip
    res.add("churn_expiry_s", "restart → all expired", c["expiry_s"], "s", "", None)
    res.add("churn_live_after", "live fingerprints after expiry", c["live_after"], "", "0", c["live_after"] == 0)
    res.add("churn_rss_after_mb", "worker RSS after expiry", c["rss_after_mb"], "MB", "", None)
    res.add("churn_disk_after_mb", "table on disk after expiry", c["disk_after_mb"], "MB", "", None)


async def wait_ready(url: str, proc: Proc, timeout_s: float = 180) -> None:
    """Until the worker's /readyz answers 200 (its partitions assigned, its table recovered)."""
    if await poll_http(f"{url}/readyz", proc, timeout_s, 0.5, lambda status, _: status == 200) is None:
        raise SystemExit(f"bench: {url}/readyz not ready after {timeout_s:.0f}s")


async def poll_http(
    url: str, proc: Proc, timeout_s: float, every_s: float, done: Callable[[int, str], bool]
) -> str | None:
    """GET `url` until `done(status, body)`; that body, or None after `timeout_s` (the process must stay up)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            proc.check()
            try:
                async with session.get(url) as resp:
                    body = await resp.text()
                    if done(resp.status, body):
                        return body
            except aiohttp.ClientError:
                pass  # not listening yet
            await asyncio.sleep(every_s)
    return None


async def scale_out(
    ep: Endpoints,
    settings: Settings,
    messages: list[tuple[bytes, bytes]],
    env: dict[str, str],
    workdir: Path,
    db: asyncpg.Pool,
) -> float:
    """The same backlog on a second topic, drained by two workers of one consumer group."""
    topic = await side_topic(settings, "x2")
    await produce(ep, topic, messages)
    workers = [
        Proc("app.cli", {**env, f"{ENV_PREFIX}TOPIC": topic, f"{ENV_PREFIX}APP_ID": f"{topic}-group",
                         f"{ENV_PREFIX}DATA_DIR": str(workdir / f"state-x2-{k}"),
                         f"{ENV_PREFIX}WEB_PORT": str(free_port())}, workdir / f"worker-x2-{k}.log")
        for k in range(2)
    ]  # fmt: skip
    try:
        samples = await poll(stored(db, topic), len(messages), "e2e x2", workers[0], timeout_s=900)
        return sustained_rate(samples)
    finally:
        for w in workers:
            w.stop()


async def churn(
    ep: Endpoints, settings: Settings, env: dict[str, str], workdir: Path, db: asyncpg.Pool, n: int
) -> dict[str, float | None]:
    """`n` distinct fingerprints, one firing event each, through one worker: its RSS and table with all of
    them live, then after they have expired (the same group and state restarted with 1 s windows)."""
    topic = await side_topic(settings, "churn")
    await produce(ep, topic, _distinct(n, topic), n)
    state_dir = workdir / "state-churn"
    churn_env = {**env, f"{ENV_PREFIX}TOPIC": topic, f"{ENV_PREFIX}APP_ID": f"{topic}-group",
                 f"{ENV_PREFIX}DATA_DIR": str(state_dir)}  # fmt: skip
    out: dict[str, float | None] = {}

    port = free_port()
    worker = Proc("app.cli", {**churn_env, f"{ENV_PREFIX}WEB_PORT": str(port)}, workdir / "worker-churn.log")
    try:
        await poll(stored(db, topic), n, "churn", worker, timeout_s=1800)
        # The gauge is refreshed by the expiry timer (every minute with the default windows).
        out["live"] = await poll_metric(port, "alert_history_live_fingerprints", lambda v: v >= n, worker, 120)
        out["rss_live_mb"] = rss_mb(worker.proc.pid)
        out["disk_live_mb"] = du_mb(state_dir)
    finally:
        worker.stop()

    port = free_port()
    short = {f"{ENV_PREFIX}DEDUP_WINDOW": "1", f"{ENV_PREFIX}FLAP_WINDOW": "1", f"{ENV_PREFIX}WEB_PORT": str(port)}
    worker = Proc("app.cli", {**churn_env, **short}, workdir / "worker-churn-expiry.log")
    started = time.monotonic()
    try:
        expired = await poll_metric(port, "alert_history_state_expired_total", lambda v: v >= n, worker, 600)
        out["expired"] = expired
        out["expiry_s"] = time.monotonic() - started
        out["live_after"] = await poll_metric(port, "alert_history_live_fingerprints", lambda v: v == 0, worker, 60)
        out["rss_after_mb"] = rss_mb(worker.proc.pid)
        out["disk_after_mb"] = du_mb(state_dir)
    finally:
        worker.stop()
    return out


def _distinct(n: int, run: str) -> Iterator[tuple[bytes, bytes]]:
    starts = _now()
    for k in range(n):
        labels = alert_labels(k, run)
        fp = fingerprint(labels)
        body = {"labels": labels, "startsAt": starts, "status": "firing", "fingerprint": fp}
        yield fp.encode(), orjson.dumps(body)


async def poll_metric(
    port: int, name: str, done: Callable[[float], bool], proc: Proc, timeout_s: float
) -> float | None:
    """Read one unlabelled metric from the worker's /metrics until `done(value)`; the last value read."""
    seen: list[float] = []

    def check(status: int, text: str) -> bool:
        for line in text.splitlines():
            if line.startswith(name + " "):
                seen.append(float(line.split()[1]))
                return done(seen[-1])
        return False

    if await poll_http(f"http://127.0.0.1:{port}/metrics", proc, timeout_s, 1.0, check) is None:
        print(f"bench: {name} still {seen[-1] if seen else None} after {timeout_s:.0f}s", file=sys.stderr)
    return seen[-1] if seen else None


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def print_table(res: Results) -> None:
    head = ("measure", "value", "goal", "")
    widths = [max(len(r[i]) for r in [head, *res.rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for r in [head, *res.rows]:
        print("  ".join(c.ljust(w) if i != 1 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if r is head:
            print(line)
    print(line)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="alert-history bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size (0.1 for a quick look)")
    parser.add_argument("--events", type=int, default=300_000, help="backlog events for e2e")
    parser.add_argument("--fingerprints", type=int, default=50_000)
    parser.add_argument("--naive-events", type=int, default=30_000, help="events the naive baseline is timed on")
    parser.add_argument("--webhook-alerts", type=int, default=100_000)
    parser.add_argument("--history-events", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="length of the paced freshness phase")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--churn", type=int, default=0, metavar="N",
        help="also pass N distinct fingerprints through a worker: RSS and table size live, then expired (off: 0)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for name in ("events", "fingerprints", "naive_events", "webhook_alerts", "history_events", "queries"):
        setattr(args, name, max(1, int(getattr(args, name) * args.scale)))
    args.webhook_alerts = max(50, args.webhook_alerts // 50 * 50)

    with tempfile.TemporaryDirectory(prefix="alert-history-bench-") as tmp:
        workdir = Path(tmp)
        stack = ServiceStack.from_env(workdir=workdir / "services")
        with stack as ep:
            started = time.monotonic()
            res = asyncio.run(bench(args, ep, workdir))
    print_table(res)
    print(f"bench: took {time.monotonic() - started:.0f} s", file=sys.stderr)
    keys = ("e2e_alerts_per_s", "naive_alerts_per_s", "freshness_p95_ms", "webhook_alerts_per_s", "webhook_p99_ms",
            "history_p95_ms", "worker_rss_mb")  # fmt: skip
    print("BENCH " + orjson.dumps({k: res.summary.get(k) for k in keys}).decode(), flush=True)
    return 0
