"""The pipeline agent on real Kafka and PostgreSQL: raw producers, poison messages, restarts."""

from __future__ import annotations

import signal
from collections.abc import Awaitable

import orjson

from agents.ingest import DLQ_REASON_HEADER
from app.fingerprint import fingerprint
from tests.agents import streams
from tests.agents.streams import dead_letters
from tests.fixtures import Worker, eventually, unique


async def produce(worker: Worker, values: list[bytes], key: bytes | None = None) -> None:
    await streams.produce(worker, [(key, v) for v in values])


async def count(db, run: str) -> int:  # type: ignore[no-untyped-def]
    return int(await db.fetchval("SELECT count(*) FROM alert_events WHERE labels->>'run' = $1", run))


async def test_raw_message_without_fingerprint_or_status(worker: Worker, db) -> None:
    run = unique()
    labels = {"alertname": "Raw", "run": run}
    # Unkeyed, as a naive producer would: the pipeline re-keys it to its fingerprint's partition.
    await produce(
        worker,
        [orjson.dumps({"labels": labels, "endsAt": "2020-01-01T00:00:00Z", "startsAt": "2019-12-31T23:00:00Z"})],
    )
    await eventually(lambda: count(db, run), what="raw message stored")
    row = await db.fetchrow("SELECT fingerprint, status, ends_at FROM alert_events WHERE labels->>'run' = $1", run)
    assert row["fingerprint"] == fingerprint(labels)
    assert row["status"] == "resolved"  # derived: endsAt in the past


async def test_poison_goes_to_dlq_with_reason_and_the_worker_goes_on(worker: Worker, db) -> None:
    run = unique()
    poison = [
        b"not json",
        orjson.dumps({"annotations": {}}),
        orjson.dumps({"labels": {"a": 1}}),
        orjson.dumps({"labels": {"a": "b"}, "startsAt": 12}),
    ]
    good = orjson.dumps({"labels": {"alertname": "AfterPoison", "run": run}})
    await produce(worker, [*poison, good], key=b"poison")
    await eventually(lambda: count(db, run), what="the message after the poison stored")
    letters = await dead_letters(worker, len(poison))
    reasons = {r.value: dict(r.headers)[DLQ_REASON_HEADER].decode() for r in letters}
    assert "not valid JSON" in reasons[b"not json"]
    assert "labels" in reasons[orjson.dumps({"annotations": {}})]
    assert "labels.a" in reasons[orjson.dumps({"labels": {"a": 1}})]
    assert "startsAt" in reasons[orjson.dumps({"labels": {"a": "b"}, "startsAt": 12})]


async def test_resends_are_counted_without_being_decoded(worker: Worker, db, http) -> None:  # type: ignore[no-untyped-def]
    async def resends() -> float:
        async with http.get(f"{worker.url}/metrics") as r:
            line = next(x for x in (await r.text()).splitlines() if x.startswith("alert_history_resends_total "))
        return float(line.split()[1])

    run = unique()
    labels = {"alertname": "Resent", "run": run}
    body = orjson.dumps({"labels": labels, "status": "firing", "startsAt": "2026-11-24T10:00:00Z"})
    # Its status derives from endsAt and the message time: each copy must be decoded again.
    derived = orjson.dumps({"labels": {**labels, "d": "1"}, "startsAt": "2026-11-24T10:00:00Z"})
    before = await resends()
    keyed = [(fingerprint(labels).encode(), body)] * 4 + [(fingerprint({**labels, "d": "1"}).encode(), derived)] * 3
    await streams.produce(worker, keyed)

    async def counted() -> bool:
        got = await db.fetch("SELECT duplicates FROM alert_events WHERE labels->>'run' = $1 ORDER BY duplicates", run)
        return [r["duplicates"] for r in got] == [2, 3]

    await eventually(counted, what="both rows with their duplicates")
    # Counted once the batch is stored, a moment after its rows are visible.
    await eventually(lambda: _equal(resends(), before + 3), what="3 resends counted")
    # The alert's last sighting is the last resend's, as on its event row.
    fp = fingerprint(labels)
    seen = await db.fetchval("SELECT last_seen_at FROM alerts WHERE fingerprint = $1", fp)
    assert seen == await db.fetchval("SELECT last_seen_at FROM alert_events WHERE fingerprint = $1", fp)


async def test_restart_loses_nothing_acknowledged(make_worker, db) -> None:  # type: ignore[no-untyped-def]
    first = make_worker()
    await first.wait_ready()
    run = unique()
    values = [orjson.dumps({"labels": {"alertname": "Restart", "run": run, "n": str(i)}}) for i in range(300)]
    await produce(first, values[:150])
    first.stop(signal.SIGKILL)  # mid-stream, no goodbye
    await produce(first, values[150:])  # acknowledged by Kafka while no worker runs

    second = make_worker(env=first.env)
    await second.wait_ready()
    try:
        await eventually(lambda: _exactly(db, run, 300), timeout=60, what="all 300 acknowledged events stored")
    except AssertionError as exc:
        logs = f"--- first worker ---\n{first.tail()}\n--- second worker ---\n{second.tail()}"
        raise AssertionError(f"{exc}; rows: {await count(db, run)}\n{logs}") from None
    dup = await db.fetchval("SELECT count(*) FROM alert_events WHERE labels->>'run' = $1 AND duplicates > 0", run)
    assert dup == 0


async def _equal(value: Awaitable[float], want: float) -> bool:
    got = await value
    assert got <= want, f"{got} counted, {want} expected"
    return got == want


async def _exactly(db, run: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    got = await count(db, run)
    assert got <= n, f"{got} rows for {n} distinct events: something was stored twice"
    return got == n


async def test_state_expires_after_the_dedup_window(make_worker, db, http) -> None:  # type: ignore[no-untyped-def]
    short = make_worker(dedup_window=4, flap_window=4)  # expiry runs every second
    await short.wait_ready()
    run = unique()
    labels = {"alertname": "Expiring", "run": run}
    body = orjson.dumps({"labels": labels, "startsAt": "2026-11-24T10:00:00Z"})
    await produce(short, [body, body], key=fingerprint(labels).encode())
    await eventually(lambda: count(db, run), what="the first sighting stored")

    async def expired() -> bool:
        async with http.get(f"{short.url}/metrics") as r:
            text = await r.text()
        return "alert_history_live_fingerprints 0.0" in text and "alert_history_state_expired_total 1.0" in text

    await eventually(expired, timeout=30, what="the state expired from the table")
    await produce(short, [body], key=fingerprint(labels).encode())
    await eventually(lambda: _exactly(db, run, 2), what="a new row after expiry")
    rows = await db.fetch(
        "SELECT decision, duplicates FROM alert_events WHERE labels->>'run' = $1 ORDER BY received_at", run
    )
    # No state left: the later sighting is first_seen again, as it would be with the state still there.
    assert [(r["decision"], r["duplicates"]) for r in rows] == [("first_seen", 1), ("first_seen", 0)]
    short.stop()
