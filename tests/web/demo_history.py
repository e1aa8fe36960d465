"""A realistic alert history written straight into alert_events: named alerts of a Kubernetes estate, episodes that
fire and resolve, resends, flapping alerts, classifications on some events. For the dashboard's and the CLI's tests
(and their screenshots); deterministic for a given seed and `now`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import orjson

from app.fingerprint import fingerprint

FIRST_ID = 1 << 61  # far from the ids a worker gives (topic code << 50 | partition << 40 | offset)


@dataclass(frozen=True)
class Kind:
    alertname: str
    severity: str
    summary: str
    instances: int
    episodes_per_day: float
    minutes: float  # mean firing time
    flapping: bool = False


KINDS = (
    Kind("KubePodCrashLooping", "warning", "Pod is crash looping", 6, 5, 14),
    Kind("HighRequestLatency", "critical", "p99 latency above 1s for 5m", 3, 4, 22),
    Kind("NodeFilesystemAlmostOutOfSpace", "warning", "Filesystem has less than 10% left", 4, 1.5, 95),
    Kind("TargetDown", "warning", "Prometheus target is down", 5, 3, 9),
    Kind("PostgresReplicationLag", "critical", "Replica more than 30s behind", 2, 3, 6, flapping=True),
    Kind("CPUThrottlingHigh", "info", "Processes experience elevated CPU throttling", 6, 6, 35),
    Kind("KubeJobFailed", "warning", "Job did not complete successfully", 3, 2, 40),
    Kind("KafkaConsumerLagHigh", "critical", "Consumer group lag is growing", 2, 2.5, 18, flapping=True),
    Kind("CertificateExpiringSoon", "info", "TLS certificate expires in less than 14 days", 2, 0.4, 600),
    Kind("ErrorBudgetBurn", "critical", "Error budget burning 14x too fast", 2, 1.2, 48),
)
NAMESPACES = ("payments", "checkout", "search", "platform", "data")
CATEGORIES = {"critical": "availability", "warning": "capacity", "info": "hygiene"}


def _classification(rng: random.Random, kind: Kind) -> dict[str, object] | None:
    if rng.random() < 0.45:
        return None  # the enrich agent has not seen it yet
    llm = rng.random() < 0.5
    return {
        "category": CATEGORIES[kind.severity],
        "severity": "noise" if kind.flapping and rng.random() < 0.3 else kind.severity,
        "confidence": round(rng.uniform(0.6, 0.98), 2),
        "reasoning": f"{kind.alertname}: {kind.summary.lower()}",
        "recommendations": [f"Check the {kind.alertname} runbook", "Look at recent deploys in the namespace"],
        "source": "llm" if llm else "rules",
        "model": "local-test-model" if llm else None,
    }


def _rows(rng: random.Random, kind: Kind, labels: dict[str, str], now: datetime, days: int, next_id: list[int]):
    fp = fingerprint(labels)
    annotations = {"summary": kind.summary, "runbook_url": f"https://runbooks.example/{kind.alertname}"}
    span_s = days * 86400
    t = now - timedelta(seconds=span_s)
    transitions: list[datetime] = []
    rows = []
    while True:
        gap = rng.expovariate(kind.episodes_per_day / 86400) if not kind.flapping else rng.uniform(120, 9000)
        start = t + timedelta(seconds=gap)
        if start >= now:
            return fp, rows
        length = timedelta(seconds=max(60, rng.expovariate(1 / (kind.minutes * 60))))
        end = start + length
        for status, at in (("firing", start), ("resolved", end)):
            if at >= now:
                break  # still firing
            received = at + timedelta(seconds=rng.uniform(0.2, 30))
            transitions = [x for x in transitions if received - x <= timedelta(minutes=30)] + [received]
            resends = int(length.total_seconds() // 300) if status == "firing" else rng.randint(0, 2)
            next_id[0] += 1
            rows.append((
                next_id[0], fp, status, orjson.dumps(labels).decode(), orjson.dumps(annotations).decode(), start,
                end if status == "resolved" else None, "http://prometheus:9090/graph", received,
                received + timedelta(seconds=min(resends * 300, 3600)), resends, len(transitions) >= 4,
                kind.severity, _json(_classification(rng, kind)), "first_seen" if not rows else "transition",
            ))  # fmt: skip
        t = end


def _json(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def seed_demo(conn: asyncpg.Connection, now: datetime, *, days: int = 2, seed: int = 20) -> dict[str, str]:
    """Insert the history of the `days` before `now`; returns each alertname's first fingerprint."""
    rng = random.Random(seed)
    for k in range(days + 2):
        await conn.execute("SELECT alert_events_ensure_partition($1)", (now - timedelta(days=days - k)).date())
    next_id = [FIRST_ID]
    rows: list[tuple[object, ...]] = []
    first: dict[str, str] = {}
    for kind in KINDS:
        for i in range(kind.instances):
            ns = NAMESPACES[(i + len(kind.alertname)) % len(NAMESPACES)]
            labels = {"alertname": kind.alertname, "severity": kind.severity, "namespace": ns,
                      "instance": f"{ns}-{i}.prod:9100", "job": f"{ns}-exporter", "cluster": "eu-west-1"}  # fmt: skip
            fp, made = _rows(rng, kind, labels, now, days, next_id)
            first.setdefault(kind.alertname, fp)
            rows += made
    await conn.executemany(
        """INSERT INTO alert_events (id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url,
                                     received_at, last_seen_at, duplicates, flapping, severity, classification,
                                     decision)
           VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb, $15)""",
        rows,
    )
    # Loaded past the sink: /report's rollups of those days are derived again (migration 012).
    await conn.execute(
        "SELECT alert_history_rollups_rebuild($1, $2)", now - timedelta(days=days + 1), now + timedelta(days=1)
    )
    await conn.execute("ANALYZE alert_events")
    return first
