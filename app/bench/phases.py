"""The bench's phases, one function each, in the order `app.bench.cli.PHASES` runs them.

A phase takes the `Run`, measures one thing on the services and adds its rows to `r.res`. Each runs with the
worker up (its own processes aside) unless it says otherwise, and leaves it so.
"""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson
import yaml

from app.bench.load import produce, webhook_load
from app.bench.measure import (
    poll,
    poll_http,
    stored,
    sustained_cpu_us,
    sustained_rate,
    wait_drained,
    wait_ready,
)
from app.bench.proc import CpuMeter, Proc, cpu_us_per, rss_mb
from app.bench.run import Run
from app.bench.stream import generate
from app.services import free_port
from app.settings import ENV_PREFIX

# How each process watched for CPU time is named in the table, and its BENCH/summary key's first word.
CPU_PROCESSES = {"worker": ("worker", "worker"), "web": ("web node", "web"),
                 "postgres": ("PostgreSQL (all backends)", "pg"), "kafka": ("Kafka", "kafka")}  # fmt: skip


def add_cpu_rows(r: Run, per_alert: Mapping[str, float | None], during: str, key: str = "") -> None:
    """A row per process: CPU µs per alert `during` a phase, keyed `<process>[_<key>]_cpu_us_per_alert`."""
    for name, us in per_alert.items():
        label, short = CPU_PROCESSES[name]
        r.res.add(f"{short}{'_' + key if key else ''}_cpu_us_per_alert", f"{label} CPU per alert, {during}", us,
                  "µs", "", None)  # fmt: skip


async def e2e_drain(r: Run) -> None:
    """The backlog onto the topic, then one worker drains it: alerts/s, CPU per alert, the worker's RSS."""
    print(f"bench: {r.args.events:,} events over {r.args.fingerprints:,} fingerprints, topic {r.settings.topic}",
          file=sys.stderr)  # fmt: skip
    r.backlog = list(itertools.islice(r.stream, r.args.events))
    produce_rate = await produce(r.ep, r.settings.topic, r.backlog)
    r.res.add("produce_alerts_per_s", "backlog produce (aiokafka, acks=all)", produce_rate, "alerts/s", "", None)
    worker = r.start_worker()
    samples = await poll(stored(r.db, r.settings.topic), r.args.events, "e2e", worker, timeout_s=900,
                         cpu=r.cpu_meter(worker=worker))  # fmt: skip
    e2e = sustained_rate(samples)
    rss = rss_mb(worker.pid)
    r.res.add("e2e_alerts_per_s", "e2e Kafka → dedup → PostgreSQL, 1 worker", e2e, "alerts/s", "≥ 20,000",
              e2e >= 20_000)  # fmt: skip
    add_cpu_rows(r, sustained_cpu_us(samples), "e2e drain")
    r.res.add("worker_rss_mb", f"worker RSS after e2e ({r.args.fingerprints:,} fingerprints)", rss, "MB", "< 512",
              rss is not None and rss < 512)  # fmt: skip


async def naive_baseline(r: Run) -> None:
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
    ratio = r.e2e_rate / naive_rate if naive_rate else None
    r.res.add("e2e_vs_naive", "e2e / naive", ratio, "x", ">= 10x", ratio is not None and ratio >= 10)
    await wait_ready(r.url, r.start_worker())  # the same group and state: it carries on where it stopped


async def events_off(r: Run) -> None:
    """What the events topic costs the history path: the same backlog drained by one worker, alone on the machine
    as the e2e worker was, once with no events topic (EVENTS_ENABLED=false) and once producing it with only the
    history agent (AGENTS=history: enrich and publish run in workers of their own). The e2e worker runs all three
    agents on one event loop; its figure against the first gives what the downstream agents cost beside it."""
    assert r.worker is not None
    r.worker.stop()
    off, off_rss = await _drain_alone(r, "noevents", {"EVENTS_ENABLED": "false"}, "events topic off", "no_events")
    alone, _ = await _drain_alone(r, "historyonly", {"AGENTS": "history"}, "history agent alone", "history_only")
    cost = 100 * (1 - alone / off) if off and alone else None
    r.res.add("events_topic_cost_pct", "events topic's cost on the history path: 1 - history agent alone / off",
              cost, "%", "≤ 5", cost is not None and cost <= 5)  # fmt: skip
    beside = 100 * (1 - r.e2e_rate / off) if off else None
    r.res.add("downstream_in_worker_cost_pct", "enrich + publish in the history worker: 1 - e2e / off", beside, "%",
              "", None)  # fmt: skip
    r.res.add("worker_no_events_rss_mb", "worker RSS after e2e, events topic off", off_rss, "MB", "", None)
    await wait_ready(r.url, r.start_worker())


async def _drain_alone(r: Run, name: str, settings: dict[str, str], what: str, key: str) -> tuple[float, float | None]:
    """The backlog on a side topic, drained by one worker with these settings: its rate (also a row), CPU rows, RSS."""
    topic = await r.side_topic(name)
    await produce(r.ep, topic, r.backlog)
    env = {**r.env, f"{ENV_PREFIX}TOPIC": topic, f"{ENV_PREFIX}APP_ID": f"{topic}-group",
           f"{ENV_PREFIX}DATA_DIR": str(r.workdir / f"state-{name}"), f"{ENV_PREFIX}WEB_PORT": str(free_port()),
           **{f"{ENV_PREFIX}{k}": v for k, v in settings.items()}}  # fmt: skip
    worker = Proc("app.cli", env, r.workdir / f"worker-{name}.log")
    try:
        samples = await poll(stored(r.db, topic), len(r.backlog), f"e2e, {what}", worker, timeout_s=900,
                             cpu=r.cpu_meter(worker=worker))  # fmt: skip
        rss = rss_mb(worker.pid)
    finally:
        worker.stop()
    rate = sustained_rate(samples)
    r.res.add(f"e2e_{key}_alerts_per_s", f"e2e, 1 worker, {what}", rate, "alerts/s", "", None)
    add_cpu_rows(r, sustained_cpu_us(samples), f"e2e drain, {what}", key=key)
    return rate, rss


async def two_workers(r: Run) -> None:
    """The same backlog on a second topic, drained by two workers of one consumer group."""
    topic = await r.side_topic("x2")
    await produce(r.ep, topic, r.backlog)
    workers = [
        Proc("app.cli", {**r.env, f"{ENV_PREFIX}TOPIC": topic, f"{ENV_PREFIX}APP_ID": f"{topic}-group",
                         f"{ENV_PREFIX}DATA_DIR": str(r.workdir / f"state-x2-{k}"),
                         f"{ENV_PREFIX}WEB_PORT": str(free_port())}, r.workdir / f"worker-x2-{k}.log")
        for k in range(2)
    ]  # fmt: skip
    try:
        samples = await poll(stored(r.db, topic), len(r.backlog), "e2e x2", workers[0], timeout_s=900)
    finally:
        for w in workers:
            w.stop()
    r.backlog = []  # the last phase that needs it
    two = sustained_rate(samples)
    r.res.add("e2e_two_workers_alerts_per_s", "e2e, 2 workers in one group", two, "alerts/s", "", None)
    r.res.add("scale_out", "2 workers / 1 worker", two / r.e2e_rate if r.e2e_rate else None, "x", "", None)


async def bridge_alone(r: Run) -> None:
    """The webhook bridge of a web node onto a topic of its own that no worker reads: the bridge's figure, not
    the machine's two cores shared with a worker storing the load."""
    topic = await r.side_topic("bridge")
    # Alerts of a stream of their own (same shape: resends, transitions, flapping), so the worker's stream,
    # which the next loads continue, is left as it was. Nothing reads the topic: no freshness probes.
    own = (value for _, value in generate(2**62, r.args.fingerprints, topic))
    async with r.web_node("web-node-alone.log", topic) as (node, url):
        cpu = CpuMeter({"web": node.pid, "kafka": r.services["kafka"]})
        before = cpu.read()
        alone = await webhook_load(url, own, r.args.webhook_alerts, r.args.concurrency, r.db, probe=False)
        per_alert = cpu_us_per(before, cpu.read(), r.args.webhook_alerts)
    r.res.add("webhook_alerts_per_s", "webhook bridge alone, batches of 50", alone.rate, "alerts/s", "≥ 20,000",
              alone.rate >= 20_000)  # fmt: skip
    r.res.add("webhook_p99_ms", "webhook bridge alone: p99 latency", alone.p99_ms, "ms", "< 100",
              alone.p99_ms is not None and alone.p99_ms < 100)  # fmt: skip
    r.res.add("bridge_cpu_us_per_alert", "web node (bridge) CPU per alert, webhook bridge alone", per_alert["web"],
              "µs", "", None)  # fmt: skip
    r.res.add("kafka_bridge_cpu_us_per_alert", "Kafka CPU per alert, webhook bridge alone", per_alert["kafka"], "µs",
              "", None)  # fmt: skip


async def bridge_into_worker(r: Run) -> None:
    """The stream goes on through a web node into the worker's topic, as fast as the clients go, while the worker
    stores it; freshness probes time 2xx → stored."""
    async with r.web_node("web-node.log") as (_, url):
        hook = await webhook_load(url, r.alerts(), r.args.webhook_alerts, r.args.concurrency, r.db)
    r.res.add("webhook_stored_alerts_per_s", "webhook while the worker stores it (same 2 cores)", hook.rate,
              "alerts/s", "", None)  # fmt: skip
    r.res.add("webhook_stored_p99_ms", "webhook while the worker stores it: p99", hook.p99_ms, "ms", "", None)
    fresh = hook.freshness_p95_ms
    r.res.add("freshness_p95_ms", f"freshness p95, 2xx → stored ({hook.probes} probes)", fresh, "ms", "< 1,000",
              fresh is not None and fresh < 1000)  # fmt: skip


async def paced_freshness(r: Run) -> None:
    """Freshness at a load one worker keeps up with (half the e2e rate), once the backlog is drained: the
    latency of the pipeline itself, not of a backlog."""
    paced_rate = round(r.e2e_rate / 2, -2) or 100
    paced_alerts = max(50, int(paced_rate * r.args.paced_seconds) // 50 * 50)
    assert r.worker is not None
    async with r.web_node("web-node-paced.log") as (_, url):
        await wait_drained(r.ep.kafka_brokers, r.db, r.settings.topic, r.worker)
        paced = await webhook_load(url, r.alerts(), paced_alerts, r.args.concurrency, r.db, rate=paced_rate)
    r.res.add("freshness_paced_p95_ms", f"freshness p95 at {paced_rate:,.0f} alerts/s ({paced.probes} probes)",
              paced.freshness_p95_ms, "ms", "", None)  # fmt: skip


# The publish phase's delivery settings: the defaults (sinks/publishers/config.py), written out so the table
# names what was measured.
PUBLISH_DELIVERY = {"timeout_s": 10.0, "deadline_s": 60.0, "max_attempts": 5, "first_delay_s": 0.5, "max_delay_s": 30.0,
                    "breaker_failures": 5, "breaker_cooldown_s": 30.0, "concurrency": 4, "queue": 1000}  # fmt: skip


def _notify_messages(n: int, run: str) -> list[tuple[bytes, bytes]]:
    """`n` notify messages (CONTRACTS.md) of distinct fingerprints, firing, as the enrich agent produces them."""
    code = 6000 + int(run[:3], 16) % 2000  # a topic code (13 bits) of no real topic: no other deliveries meet these
    out = []
    for k in range(n):
        fp = f"{run}{k:08x}"
        event = {"id": str((code << 50) | k), "fingerprint": fp, "status": "firing", "startsAt": "2026-12-01T00:00:00Z",
                 "labels": {"alertname": "BenchPublish", "k": str(k)}, "annotations": {"summary": "bench"},
                 "classification": None}  # fmt: skip
        out.append((fp.encode(), orjson.dumps({"event": event, "mode": "transparent"})))
    return out


async def publish_deliveries(r: Run) -> None:
    """Deliveries/s of the publish agent to a healthy local webhook target while a second target is down (nothing
    listens on its port: its breaker opens and its deliveries go to the dead-letter topic)."""
    from aiohttp import web

    n = max(100, r.args.naive_events // 3)
    received = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    topic = await r.side_topic("publish")
    rules = r.workdir / "publish-rules.yml"
    rules.write_text(yaml.safe_dump({"targets": [
        {"name": "healthy", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "delivery": PUBLISH_DELIVERY},
        {"name": "down", "type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook",
         "delivery": PUBLISH_DELIVERY},
    ]}))  # fmt: skip
    web_port = free_port()
    worker = Proc("app.cli", {**r.env, f"{ENV_PREFIX}TOPIC": topic, f"{ENV_PREFIX}APP_ID": f"{topic}-group",
                              f"{ENV_PREFIX}DATA_DIR": str(r.workdir / "state-publish"),
                              f"{ENV_PREFIX}WEB_PORT": str(web_port), f"{ENV_PREFIX}RULES_FILE": str(rules)},
                  r.workdir / "worker-publish.log")  # fmt: skip
    try:
        await wait_ready(f"http://127.0.0.1:{web_port}", worker)
        await produce(r.ep, f"{topic}-notify", _notify_messages(n, uuid.uuid4().hex[:8]))

        async def delivered() -> int:
            return received

        samples = await poll(delivered, n, "publish", worker, timeout_s=900)
    finally:
        worker.stop()
        await runner.cleanup()
    d = PUBLISH_DELIVERY
    r.res.add("publish_deliveries_per_s", "publish: deliveries/s to a healthy webhook, another target down",
              sustained_rate(samples), "deliveries/s", "", None)  # fmt: skip
    r.res.add("publish_deliveries", f"publish: deliveries measured ({d['max_attempts']} attempts in "
              f"{d['deadline_s']:.0f} s, jitter {d['first_delay_s']} to {d['max_delay_s']:.0f} s; breaker "
              f"{d['breaker_failures']} failures, {d['breaker_cooldown_s']:.0f} s; {d['concurrency']} in flight)", n,
              "deliveries", "", None)  # fmt: skip


async def enrich_rates(r: Run) -> None:
    """The enrich agent's events/s on one worker with Redis, alone on the machine: every alert new to it, with a
    local LLM answering each in 50 ms (64 in flight); then the same alerts' resolves, from the warm cache."""
    import orjson

    from app.bench.llm import FakeLLM
    from app.fingerprint import fingerprint

    if not r.ep.redis_url:
        print("bench: no Redis: the enrich phase is skipped", file=sys.stderr)
        return
    assert r.worker is not None
    r.worker.stop()
    n = max(200, r.args.events // 30)
    topic = await r.side_topic("enrich")
    server = FakeLLM(answer_after_s=0.05)
    port = free_port()
    env = {**r.env, f"{ENV_PREFIX}TOPIC": topic, f"{ENV_PREFIX}APP_ID": f"{topic}-group",
           f"{ENV_PREFIX}DATA_DIR": str(r.workdir / "state-enrich"), f"{ENV_PREFIX}WEB_PORT": str(port),
           f"{ENV_PREFIX}REDIS_URL": r.ep.redis_url, f"{ENV_PREFIX}LLM_URL": await server.start(free_port()),
           f"{ENV_PREFIX}LLM_MODEL": "bench", f"{ENV_PREFIX}LLM_CONCURRENCY": "64",
           f"{ENV_PREFIX}LLM_RATE": "10000"}  # fmt: skip
    starts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    alerts = [{"alertname": f"Enrich{k}", "severity": ("critical", "warning")[k % 2], "bench": topic} for k in range(n)]

    def messages(status: str) -> list[tuple[bytes, bytes]]:
        out = []
        for labels in alerts:
            fp = fingerprint(labels)
            body = {"labels": labels, "startsAt": starts, "status": status, "fingerprint": fp}
            out.append((fp.encode(), orjson.dumps(body)))
        return out

    async def classified(since: int) -> int:
        body = await poll_http(f"http://127.0.0.1:{port}/metrics", worker, 10, 1, lambda s, _: s == 200) or ""
        lines = (x for x in body.splitlines() if x.startswith("alert_history_events_classified_total{"))
        return int(sum(float(x.rsplit(" ", 1)[1]) for x in lines)) - since

    worker = Proc("app.cli", env, r.workdir / "worker-enrich.log")
    try:
        await wait_ready(f"http://127.0.0.1:{port}", worker)
        await produce(r.ep, topic, messages("firing"))
        cpu = r.cpu_meter(worker=worker)
        asked = await poll(lambda: classified(0), n, "enrich, LLM", worker, timeout_s=900, cpu=cpu)
        await produce(r.ep, topic, messages("resolved"))
        warm = await poll(lambda: classified(n), n, "enrich, cache", worker, timeout_s=900, cpu=cpu)
    finally:
        worker.stop()
        await server.stop()
    await wait_ready(r.url, r.start_worker())
    r.res.add("enrich_llm_events_per_s", f"enrich, every alert new: LLM answering in 50 ms ({len(server.requests):,} "
              "asked)", sustained_rate(asked), "events/s", "", None)  # fmt: skip
    r.res.add("enrich_cache_events_per_s", "enrich, the same alerts' resolves: cache warm", sustained_rate(warm),
              "events/s", "", None)  # fmt: skip
    # History and enrich both work on each event here (one worker): per event stored, then enriched.
    add_cpu_rows(r, sustained_cpu_us(asked), "stored + enriched by the LLM", "enrich_llm")
    add_cpu_rows(r, sustained_cpu_us(warm), "stored + enriched from the cache", "enrich_cache")
