"""`alert-history bench`: every goal of the Performance issue measured in one run, with a naive baseline.

The phases run in PHASES' order on the same embedded (or ALERT_HISTORY_*) services; a new phase is a function
of `app.bench.phases` and a line here. The table is printed at the end, and last exactly `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from app.bench import phases
from app.bench.churn import churn
from app.bench.reads import reads
from app.bench.report import Results, bench_line, table
from app.bench.run import Run
from app.services import Endpoints, ServiceStack

PHASES: tuple[Callable[[Run], Awaitable[None]], ...] = (
    phases.e2e_drain,  # the backlog produced, then drained by one worker
    phases.naive_baseline,  # the per-event agent on the same backlog
    phases.events_off,  # the same backlog, one worker with the events topic off
    phases.two_workers,  # the same backlog, two workers of one group
    phases.bridge_alone,  # webhook → a web node → a topic nobody reads
    phases.bridge_into_worker,  # webhook → a web node → the worker's topic, with freshness probes
    phases.paced_freshness,  # the same at half the e2e rate
    reads,  # /history, /report, time travel on 10M seeded events, 8 readers, the worker storing a steady load
    phases.enrich_rates,  # the enrich agent: a 50 ms local LLM, then the cache warm
    phases.publish_deliveries,  # notify → a healthy webhook target, another one down
    churn,  # --churn N only
)
SCALED = ("events", "fingerprints", "naive_events", "webhook_alerts", "history_events", "queries", "report_queries")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alert-history bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size (0.1 for a quick look)")
    parser.add_argument("--events", type=int, default=300_000, help="backlog events for e2e")
    parser.add_argument("--fingerprints", type=int, default=50_000)
    parser.add_argument("--naive-events", type=int, default=30_000, help="events the naive baseline is timed on")
    parser.add_argument("--webhook-alerts", type=int, default=100_000)
    parser.add_argument("--history-events", type=int, default=10_000_000, help="events seeded for the reads")
    parser.add_argument(
        "--seeded", action="store_true",
        help="reads: the database (ALERT_HISTORY_DATABASE_URL) already holds a seeded history: read it, seed nothing",
    )  # fmt: skip
    parser.add_argument("--queries", type=int, default=200, help="requests of each /history and time-travel query")
    parser.add_argument("--report-queries", type=int, default=24, help="requests of each /report query")
    parser.add_argument("--reads-load", type=float, default=1000, help="alerts/s the worker stores during the reads")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="length of the paced freshness phase")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--churn", type=int, default=0, metavar="N",
        help="also pass N distinct fingerprints through a worker: RSS and table size live, then expired (off: 0)",
    )  # fmt: skip
    parser.add_argument(
        "--phases", default="", metavar="NAME,…",
        help=f"run only these phases, in the usual order (default all: {', '.join(p.__name__ for p in PHASES)})",
    )  # fmt: skip
    args = parser.parse_args(argv)
    names = {p.__name__ for p in PHASES}
    args.phases = set(filter(None, args.phases.split(","))) or names
    if unknown := args.phases - names:
        known = ", ".join(p.__name__ for p in PHASES)
        parser.error(f"--phases: no phase {', '.join(sorted(unknown))}; phases: {known}")
    for name in SCALED:
        setattr(args, name, max(1, int(getattr(args, name) * args.scale)))
    args.webhook_alerts = max(50, args.webhook_alerts // 50 * 50)
    return args


async def bench(args: argparse.Namespace, ep: Endpoints, workdir: Path) -> Results:
    r = await Run.open(args, ep, workdir)
    try:
        for phase in PHASES:
            if phase.__name__ in args.phases:
                try:
                    await phase(r)
                except (Exception, SystemExit) as exc:  # the other phases' figures still count
                    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
                    print(f"bench: phase {phase.__name__} failed: {reason}", file=sys.stderr)
                    r.res.fail(phase.__name__, reason)
    finally:
        await r.close()
    return r.res


def main(argv: list[str]) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="alert-history-bench-") as tmp:
        workdir = Path(tmp)
        with ServiceStack.from_env(workdir=workdir / "services") as ep:
            started = time.monotonic()
            res = asyncio.run(bench(args, ep, workdir))
    print(table(res))
    print(f"bench: took {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(bench_line(res), flush=True)
    return 1 if res.failed else 0
