"""Consumer lag of the topic, per partition this worker owns: what Kafka holds that PostgreSQL does not yet.

Measured against the sink's next offsets in PostgreSQL (stored in the same transaction as the rows), so it is the
lag of what is stored, not of what was fetched: a worker that fetches but cannot store shows it growing.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import TP

from app import metrics
from app.redact import describe

log = logging.getLogger(__name__)

INTERVAL_S = 10.0
_shown: set[str] = set()  # partitions with a lag series from this worker


async def observe(app: Any) -> None:
    """Set alert_history_consumer_lag{partition} and alert_history_assigned_partitions for this worker."""
    topic = app.settings.topic
    owned = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)
    metrics.ASSIGNED_PARTITIONS.set(len(owned))
    rows = await app.resources.db.fetch("SELECT partition, next_offset FROM sink_offsets WHERE topic = $1", topic)
    stored = {r["partition"]: r["next_offset"] for r in rows}
    shown: set[str] = set()
    for partition in owned:
        highwater = app.consumer.highwater(TP(topic, partition))
        if highwater is None or highwater < 0:  # nothing fetched from it yet
            continue
        metrics.CONSUMER_LAG.labels(str(partition)).set(max(0, highwater - stored.get(partition, 0)))
        shown.add(str(partition))
    for partition_label in _shown - shown:  # partitions that moved to another worker
        metrics.CONSUMER_LAG.remove(partition_label)
    _shown.clear()
    _shown.update(shown)


def schedule(app: Any) -> None:
    failed = False

    async def run() -> None:
        nonlocal failed
        try:
            await observe(app)
            failed = False
        except Exception as exc:  # a metric is not worth a crash; said once per outage
            if not failed:
                log.warning("consumer lag not measured: %s", describe(exc))
            failed = True

    app.timer(interval=INTERVAL_S, name="consumer-lag")(run)
