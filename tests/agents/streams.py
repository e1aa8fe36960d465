"""Producing a stream, waiting for the pipeline to store it, and checking PostgreSQL against the model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.fingerprint import fingerprint as alertmanager_fingerprint
from app.settings import ENV_PREFIX, Settings
from app.topics import end_offsets
from tests.fixtures import Worker, eventually
from tests.model import ALERT_COLUMNS, EVENT_COLUMNS, History, Message, Rules, alert_tuples, event_tuples, expected

ROW = "fingerprint, status, starts_at, ends_at, duplicates, flapping, last_seen_at, received_at, decision"


async def produce(worker: Worker, messages: Sequence[tuple[bytes | None, bytes]], topic: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.endpoints.kafka_brokers, acks="all", linger_ms=10)
    await producer.start()
    try:
        for i in range(0, len(messages), 2000):
            futures = [await producer.send(topic or worker.topic, v, key=k) for k, v in messages[i : i + 2000]]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def stored(db: asyncpg.Pool, topic: str) -> int:
    return int(await db.fetchval("SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE topic = $1", topic))


async def topic_code(db: asyncpg.Pool, topic: str) -> int:
    return int(await db.fetchval("SELECT code FROM topics WHERE name = $1", topic))


async def rows(db: asyncpg.Pool, topic: str, *, timing: bool = True) -> list[tuple[Any, ...]]:
    """The topic's events, in a stable order; without `timing`, only what does not depend on broker times."""
    code = await topic_code(db, topic)
    cols = ROW if timing else "fingerprint, status, starts_at, ends_at, duplicates, flapping, decision"
    result = await db.fetch(
        f"SELECT {cols} FROM alert_events WHERE id >> 50 = $1 ORDER BY fingerprint, starts_at, status, id", code
    )
    return [tuple(r) for r in result]


async def drained(db: asyncpg.Pool, worker: Worker, *, timeout: float = 120) -> None:
    """Wait until PostgreSQL holds every message of the topic, re-keyed copies included.

    PostgreSQL's offsets are read before the topic's ends: the pipeline produces a re-keyed copy
    before it commits the batch of its original, so every copy is already below those ends.
    """

    last: dict[str, Any] = {}

    async def caught_up() -> bool:
        held = {
            r["partition"]: r["next_offset"]
            for r in await db.fetch("SELECT partition, next_offset FROM sink_offsets WHERE topic = $1", worker.topic)
        }
        ends = await end_offsets(worker.endpoints.kafka_brokers, worker.topic)
        last.update(held=held, ends=ends)
        return bool(ends) and all(held.get(p, 0) >= end for p, end in ends.items())

    try:
        await eventually(caught_up, timeout=timeout, what=f"PostgreSQL to hold all of {worker.topic}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: offsets held {last.get('held')}, topic ends {last.get('ends')}") from None


async def read_topic(brokers: str, topic: str, start: dict[int, int] | None = None) -> list[Message]:
    """Every message of the topic from `start` (default: the beginning) to its current end, as stored."""
    ends = await end_offsets(brokers, topic)
    todo = {p for p, end in ends.items() if end > (start or {}).get(p, 0)}
    out: list[Message] = []
    if not todo:
        return out
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in ends}
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            consumer.seek(tp, (start or {}).get(p, 0))
        while todo:
            for tp, batch in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).items():
                out.extend(
                    Message(tp.partition, r.offset, r.timestamp, r.value or b"", dict(r.headers), r.key)
                    for r in batch
                    if r.offset < ends[tp.partition]
                )
            todo = {p for p in todo if await consumer.position(tps[p]) < ends[p]}
    finally:
        await consumer.stop()
    return out


async def dead_letters(worker: Worker, n: int, containing: bytes = b"") -> list[Any]:
    """The first `n` records of the worker's dead-letter topic whose value contains `containing`."""
    consumer = AIOKafkaConsumer(
        worker.topic + "-dlq",
        bootstrap_servers=worker.endpoints.kafka_brokers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[Any] = []
    try:

        async def enough() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(r for r in records if containing in (r.value or b""))
            return len(got) >= n

        await eventually(enough, timeout=20, what=f"{n} dead letters")
    finally:
        await consumer.stop()
    return got


def rules(worker: Worker) -> Rules:
    """The dedup and flap rules the worker runs with, from its settings."""
    s = Settings(**{k.removeprefix(ENV_PREFIX).lower(): v for k, v in worker.env.items() if k.startswith(ENV_PREFIX)})
    return Rules(s.dedup_window, s.flap_window, s.flap_threshold)


async def assert_equals_model(
    db: asyncpg.Pool, worker: Worker, messages: Sequence[Message], *, where: str = "true", args: Sequence[Any] = ()
) -> History:
    """PostgreSQL's rows for `messages` (those of the topic matching `where`) equal the model's.

    Returns the model's history. `where` filters both tables, e.g. by a run label.
    """
    partitions = len(await end_offsets(worker.endpoints.kafka_brokers, worker.topic))
    model = expected(messages, rules(worker), partitions)
    code = await topic_code(db, worker.topic)
    events = await db.fetch(
        f"SELECT {EVENT_COLUMNS} FROM alert_events WHERE id >> 50 = ${len(args) + 1} AND {where}", *args, code
    )
    alerts = await db.fetch(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {where}", *args)
    got_events, want_events = event_tuples(events), event_tuples(model.events)
    got_alerts, want_alerts = alert_tuples(alerts), alert_tuples(model.alerts.values())
    for table, got, want in (("alert_events", got_events, want_events), ("alerts", got_alerts, want_alerts)):
        if got != want:
            held = await db.fetch("SELECT partition, next_offset FROM sink_offsets WHERE topic = $1", worker.topic)
            ids = [code << 50 | m.partition << 40 | m.offset for m in messages]
            by_id = await db.fetch(
                "SELECT id & 1099511627775 AS o, fingerprint, status, decision, duplicates, labels, received_at"
                " FROM alert_events"
                " WHERE id = ANY($1::bigint[]) ORDER BY id",
                ids,
            )
            raise AssertionError(
                _difference(table, got, want, messages)
                + f"\nPostgreSQL's offsets {sorted(tuple(r) for r in held)}, read {len(messages)} messages"
                + f"\nrows by the messages' event ids: {[tuple(r) for r in by_id]}"
            )
    return model


def _difference(
    table: str, got: list[tuple[Any, ...]], want: list[tuple[Any, ...]], messages: Sequence[Message]
) -> str:
    extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    fps = sorted({r[0] for r in extra + missing})[:2]
    lines = [
        f"{table}: {len(got)} rows stored, {len(want)} in the model; {len(extra)} only stored, {len(missing)} only "
        f"in the model, over {len(fps)} fingerprints. The first ones:"
    ]
    for fp in fps:
        lines.append(f"{fp} stored: {[r for r in got if r[0] == fp]}")
        lines.append(f"{fp} model:  {[r for r in want if r[0] == fp]}")
        lines.extend(
            f"  message {m.partition}/{m.offset} at {m.timestamp_ms} {dict(m.headers)} {m.value[:160]!r}"
            for m in messages
            if fp.encode() in m.value or _fingerprint_of(m) == fp
        )
    return "\n".join(lines)


def _fingerprint_of(m: Message) -> str | None:
    try:
        return alertmanager_fingerprint(orjson.loads(m.value)["labels"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
