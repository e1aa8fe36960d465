"""Producers that write the topic directly meet the same validation as the bridge: what once crashed the worker
(and every restart of it) or forged another alert's history goes to the dead-letter topic with the reason."""

from __future__ import annotations

import orjson
from aiokafka import AIOKafkaConsumer

from agents.ingest import DLQ_REASON_HEADER
from app.fingerprint import fingerprint
from tests.agents import streams
from tests.fixtures import Worker, eventually, unique

NUL = "\x00"


async def reasons_of(worker: Worker, values: list[bytes]) -> dict[bytes, str]:
    """The dead-letter reason of each of `values`, read from the worker's dead-letter topic."""
    consumer = AIOKafkaConsumer(
        worker.topic + "-dlq",
        bootstrap_servers=worker.endpoints.kafka_brokers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: dict[bytes, str] = {}
    try:

        async def all_found() -> bool:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                mine = (r for r in records if r.value in values)
                found.update({r.value: dict(r.headers)[DLQ_REASON_HEADER].decode() for r in mine})
            return len(found) == len(values)

        await eventually(all_found, timeout=30, what=f"{len(values)} dead letters")
    finally:
        await consumer.stop()
    return found


async def test_what_would_crash_or_forge_goes_to_the_dead_letter_topic_and_the_worker_goes_on(
    worker: Worker, db
) -> None:
    run = unique()
    labels = {"alertname": "Poison", "run": run}
    poison = {
        "fingerprint: ": {"labels": labels, "fingerprint": fingerprint({"alertname": "Victim"})},
        "annotations: invalid annotation name": {"labels": labels, "annotations": {f"a{NUL}": "x"}},
        "generatorURL: contains a NUL": {"labels": labels, "generatorURL": NUL},
        "source: contains a NUL": {"labels": labels, "source": NUL},
        "receiver: contains a NUL": {"labels": labels, "receiver": NUL},
        "startsAt: 0001-01-01T00:00:00+01:00 is outside": {"labels": labels, "startsAt": "0001-01-01T00:00:00+01:00"},
        "endsAt: 9999-12-31T23:00:00-05:00 is outside": {"labels": labels, "endsAt": "9999-12-31T23:00:00-05:00"},
    }
    values = {names: orjson.dumps(body) for names, body in poison.items()}
    good = orjson.dumps({"labels": {**labels, "after": "poison"}})
    key = fingerprint(labels).encode()
    await streams.produce(worker, [(key, v) for v in values.values()] + [(key, good)])

    async def stored() -> int:
        return int(await db.fetchval("SELECT count(*) FROM alert_events WHERE labels->>'run' = $1", run))

    assert await eventually(stored, what="the alert after the poison stored") == 1
    reasons = await reasons_of(worker, list(values.values()))
    for names, value in values.items():
        assert names in reasons[value], (names, reasons[value])
    assert "is not the fingerprint of these labels" in reasons[values["fingerprint: "]]
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
