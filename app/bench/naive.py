"""The naive baseline of the benchmark: a per-event Faust agent, one table update and one INSERT per event.

What a first version usually looks like; `make bench` measures the real pipeline against it in the same run.
Run as `python -m app.bench.naive worker` with the same ALERT_HISTORY_* settings as a worker.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import faust
import orjson

from app.fingerprint import fingerprint
from app.settings import load_settings

settings = load_settings()
app = faust.App(
    f"{settings.app_id}-naive",
    broker=settings.broker_url,
    store="rocksdb://",
    datadir=f"{settings.data_dir}/naive",
    web_enabled=False,
    topic_partitions=settings.partitions,
    consumer_auto_offset_reset="earliest",
    autodiscover=False,
)
topic = app.topic(settings.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
state = app.Table("naive-state", partitions=settings.partitions)
_pool: list[asyncpg.Pool] = []

CREATE = """CREATE TABLE IF NOT EXISTS naive_events (
    fingerprint text, status text, labels jsonb, starts_at text, duplicate boolean, received_at timestamptz)"""


async def pool() -> asyncpg.Pool:
    if not _pool:
        p = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        await p.execute(CREATE)
        _pool.append(p)
    return _pool[0]


@app.agent(topic)
async def per_event(stream: Any) -> None:
    db = await pool()
    async for value in stream:
        alert = orjson.loads(value)
        fp = alert.get("fingerprint") or fingerprint(alert["labels"])
        key = (alert.get("status"), alert.get("startsAt"))
        duplicate = state.get(fp) == list(key)
        state[fp] = list(key)
        await db.execute(
            "INSERT INTO naive_events VALUES ($1, $2, $3::jsonb, $4, $5, now())",
            fp, alert.get("status"), orjson.dumps(alert["labels"]).decode(), alert.get("startsAt"), duplicate,
        )  # fmt: skip


if __name__ == "__main__":
    app.main()
