"""The reads phase: /history, /report and the time-travel query on a seeded history (10M events over 30 days by
default), each answered by a web node to READERS concurrent clients while the worker stores a steady load: p50 and
p95 per query.

A request that fails (an error status, a timeout) counts as slower than any answer: its query's row says how many
failed, a percentile that falls on one is n/a, and the phase goes on.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import yarl

from app.bench.load import steady_produce
from app.bench.measure import Reads, concurrent_gets, wait_ready
from app.bench.proc import Proc
from app.bench.run import Run
from app.services import free_port
from app.settings import ENV_PREFIX

READERS = 8
DAYS = 30
DEEP_PAGES = 20  # the deep page: after this many pages of 1,000 (or as deep as the range goes)


@dataclass(frozen=True)
class Query:
    key: str  # `<key>_p50_ms`, `<key>_p95_ms`
    label: str
    path: str
    params: Callable[[int], dict[str, str]]  # the k-th request's
    requests: int
    goal_ms: float | None = None


def _rfc3339(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def queries(n_history: int, n_report: int, deep_cursor: str | None, now: datetime) -> list[Query]:
    def name(k: int) -> str:
        return f'alertname="Alert{k % 200}"'

    out = [
        Query("history", "/history matcher + 24 h, limit 100", "/history",
              lambda k: {"filter": name(k), "since": "-24h", "limit": "100"}, n_history, 50),
        Query("history_regex", "/history regex matcher + 24 h, limit 100", "/history",
              lambda k: {"filter": f'alertname=~"Alert{k % 20}.*"', "since": "-24h", "limit": "100"}, n_history),
    ]  # fmt: skip
    # A range shallower than one page (a small seed) has no cursor: its first page is the deepest there is.
    deep = {"cursor": deep_cursor} if deep_cursor is not None else {}
    out.append(Query("history_deep", f"/history 24 h, a page {DEEP_PAGES:,} pages of 1,000 deep", "/history",
                     lambda k: {"since": "-24h", "limit": "100", **deep}, n_history))  # fmt: skip
    def report(since: str, matcher: bool) -> Callable[[int], dict[str, str]]:
        return lambda k: {"since": since, "bucket": "1h", **({"filter": name(k)} if matcher else {})}

    for since, span in (("-24h", "24 h"), ("-7d", "7 days"), ("-30d", "30 days")):
        key = "report" if since == "-30d" else f"report_{since[1:]}"  # report_p95_ms: the 30 days' (the issue's)
        out.append(Query(key, f"/report {span}", "/report", report(since, False), n_report,
                         100 if key == "report" else None))  # fmt: skip
        out.append(Query(f"report_{since[1:]}_filter", f"/report {span}, a matcher", "/report", report(since, True),
                         n_report))  # fmt: skip
    rng = random.Random(7)
    moments = [_rfc3339(now - timedelta(seconds=rng.uniform(0, DAYS * 86400))) for _ in range(n_history)]
    out.append(Query("timetravel", "time travel: /api/v2/alerts?at= (a moment in 30 days) + matcher",
                     "/api/v2/alerts", lambda k: {"at": moments[k], "filter": name(k)}, n_history, 50))  # fmt: skip
    return out


async def deep_cursor(url: str) -> str | None:
    """The cursor of a page DEEP_PAGES pages of 1,000 into the last 24 h (or the deepest there is)."""
    cursor = None
    async with aiohttp.ClientSession() as session:
        for _ in range(DEEP_PAGES):
            params = {"since": "-24h", "limit": "1000", **({"cursor": cursor} if cursor else {})}
            async with session.get(f"{url}/history", params=params) as r:
                if r.status != 200:
                    return cursor
                nxt = (await r.json())["next"]
            if nxt is None:
                return cursor
            cursor = nxt
    return cursor


async def time_travel_answers(url: str, now: datetime) -> bool:
    """Whether this build answers `at=`: a moment gets 2xx and a malformed one 400 (a build without time travel
    ignores the parameter and lists what fires now)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v2/alerts", params={"at": _rfc3339(now - timedelta(hours=1))}) as r:
            ok = 200 <= r.status < 300
        async with session.get(f"{url}/api/v2/alerts", params={"at": "not-a-time"}) as r:
            return ok and r.status == 400


def _add(r: Run, q: Query, got: Reads) -> None:
    failed = f" ({got.note()})" if got.failure else ""
    p50, p95 = got.pct(50), got.pct(95)
    goal = f"< {q.goal_ms:.0f}" if q.goal_ms else ""
    r.res.add(f"{q.key}_p50_ms", f"{q.label}: p50{failed}", p50, "ms", "", None)
    r.res.add(f"{q.key}_p95_ms", f"{q.label}: p95{failed}", p95, "ms", goal,
              None if not q.goal_ms else (p95 is not None and p95 < q.goal_ms))  # fmt: skip


async def reads(r: Run) -> None:
    """Seed, then every query of `queries` answered to READERS clients at once, a worker storing a steady load."""
    from app.seed import seed_events

    if r.args.seeded:  # a history seeded before (a copy of a large one): the reads are what is measured
        url = r.ep.database_url
        async with r.db.acquire() as conn:
            n = await conn.fetchval("SELECT count(*) FROM alert_events")
        print(f"bench: reading the {n:,} events already in the database", file=sys.stderr)
        r.res.add("events_seeded", "events in the database (seeded before: --seeded)", n, "events", "", None)
    else:
        # A database of its own: the other phases' alerts (hundreds of thousands, all within the last hour) would
        # be in every range read, and /report's cost grows with the alerts in its range (docs/performance.md).
        url = await _fresh_database(r.ep.database_url, "reads")
        n = r.args.history_events
        print(f"bench: seeding {n:,} events over {DAYS} days", file=sys.stderr)
        started = asyncio.get_running_loop().time()
        conn = await asyncpg.connect(url)
        try:
            await seed_events(conn, n, days=DAYS, now=datetime.now(UTC), progress=True)
        finally:
            await conn.close()
        seed_s = asyncio.get_running_loop().time() - started
        r.res.add("events_seeded", f"events seeded over {DAYS} days (alert-history seed)", n, "events", "", None)
        r.res.add("seed_events_per_s", "seed: events loaded per second", n / seed_s if seed_s else None, "events/s",
                  "", None)  # fmt: skip
    # A worker of its own onto a topic of its own, storing the steady load into that history.
    topic = await r.side_topic("reads")
    port = free_port()
    env = {**r.env, f"{ENV_PREFIX}DATABASE_URL": url, f"{ENV_PREFIX}TOPIC": topic,
           f"{ENV_PREFIX}APP_ID": f"{r.env[f'{ENV_PREFIX}APP_ID']}-reads",
           f"{ENV_PREFIX}DATA_DIR": str(r.workdir / "state-reads"), f"{ENV_PREFIX}WEB_PORT": str(port)}  # fmt: skip
    worker = Proc("app.cli", env, r.workdir / "worker-reads.log")
    try:
        await wait_ready(f"http://127.0.0.1:{port}", worker)
        await _read(r, worker, topic, env)
    finally:
        worker.stop()


async def _fresh_database(url: str, suffix: str) -> str:
    """A new database beside `url`'s on the same server, migrated: its URL."""
    from app.migrate import migrate

    base = yarl.URL(url)
    name = f"{base.path.lstrip('/')}_{suffix}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    fresh = str(base.with_path(f"/{name}"))
    await migrate(fresh)
    return fresh


async def _read(r: Run, worker: Proc, topic: str, env: dict[str, str]) -> None:
    # The readers ask a web node (as deployed: the reads and the bridge, no partitions), not the worker, whose
    # event loop consumes and stores the load meanwhile.
    async with r.web_node("web-node-reads.log", env=env) as (_, url):
        now = datetime.now(UTC)
        deep = await deep_cursor(url)
        available = await time_travel_answers(url, now)
        stop = asyncio.Event()
        load = asyncio.create_task(steady_produce(r.ep, topic, r.stream, r.args.reads_load, stop))
        try:
            for q in queries(r.args.queries, r.args.report_queries, deep, now):
                if q.key == "timetravel" and not available:
                    r.res.add("timetravel_p95_ms", "time travel: /api/v2/alerts?at= unavailable in this build", None,
                              "ms", "< 50", None)  # fmt: skip
                    continue
                _add(r, q, await concurrent_gets(f"{url}{q.path}", [q.params(k) for k in range(q.requests)], READERS))
                worker.check()
        finally:
            stop.set()
            sent, elapsed = await load
    r.res.add("reads_load_alerts_per_s", "steady load produced onto the worker's topic meanwhile", sent / elapsed
              if elapsed else None, "alerts/s", "", None)  # fmt: skip
