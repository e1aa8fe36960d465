"""A realistic alert stream: many fingerprints, mostly resends, some transitions, a few flapping alerts."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from app.fingerprint import fingerprint

RESEND_SHARE = 0.70  # Alertmanager's repeat_interval resends and HA-pair copies
FLAPPING_SHARE = 0.02  # of fingerprints: every sighting is a transition


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@dataclass
class _Alert:
    labels: dict[str, str]
    fingerprint: str
    status: str = "resolved"
    starts_at: datetime | None = None
    ends_at: datetime | None = None


def alert_labels(k: int, run: str) -> dict[str, str]:
    return {
        "alertname": f"Alert{k % 200}",
        "namespace": f"ns{k % 50}",
        "instance": f"host{k}:9100",
        "severity": ("critical", "warning", "info")[k % 3],
        "bench": run,
    }


def generate(n: int, fingerprints: int, run: str, seed: int = 7) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) topic messages; deterministic for a seed."""
    rng = random.Random(seed)
    alerts: dict[int, _Alert] = {}
    flapping = set(rng.sample(range(fingerprints), max(1, int(fingerprints * FLAPPING_SHARE))))
    now = datetime.now(UTC)
    for i in range(n):
        k = rng.randrange(fingerprints)
        a = alerts.get(k)
        if a is None:
            labels = alert_labels(k, run)
            a = alerts[k] = _Alert(labels, fingerprint(labels))
        t = now + timedelta(milliseconds=i)
        if a.starts_at is None or k in flapping or rng.random() >= RESEND_SHARE:
            if a.status == "resolved":  # a new episode
                a.status, a.starts_at, a.ends_at = "firing", t, None
            else:
                a.status, a.ends_at = "resolved", t
        assert a.starts_at is not None  # set by the alert's first event, which is always a firing
        body = {
            "labels": a.labels,
            "annotations": {"summary": f"{a.labels['alertname']} on {a.labels['instance']}"},
            "startsAt": _iso(a.starts_at),
            "endsAt": _iso(a.ends_at) if a.ends_at else "0001-01-01T00:00:00Z",
            "status": a.status,
            "fingerprint": a.fingerprint,
            "generatorURL": "http://prometheus:9090/graph",
        }
        yield a.fingerprint.encode(), orjson.dumps(body)
