"""No message can stop the pipeline: what decoding chokes on, and rows PostgreSQL refuses, go to the dead-letter
topic with the reason; everything else of their batch is stored, and the worker goes on."""

from __future__ import annotations

import signal

import orjson

from agents.ingest import DLQ_REASON_HEADER
from app.fingerprint import fingerprint
from app.services import Endpoints
from tests.agents import streams
from tests.agents.streams import dead_letters
from tests.fixtures import Worker, eventually, scratch_database_url, unique


async def count(db, run: str) -> int:  # type: ignore[no-untyped-def]
    return int(await db.fetchval("SELECT count(*) FROM alert_events WHERE labels->>'run' = $1", run))


def alert(run: str, n: int, **extra: object) -> tuple[bytes, bytes]:
    labels = {"alertname": "Refused", "run": run, "n": str(n)}
    body = {"labels": labels, "status": "firing", "startsAt": "2026-11-24T10:00:00Z", **extra}
    return fingerprint(labels).encode(), orjson.dumps(body)


async def test_messages_decoding_chokes_on_are_dead_lettered_and_the_batch_is_stored(worker: Worker, db) -> None:
    run = unique()
    bad = [
        alert(run, 100, annotations={"key\u0000nul": "x"}),  # PostgreSQL's jsonb cannot hold U+0000
        alert(run, 101, startsAt="0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
        alert(run, 102, startsAt="9999-12-31T23:00:00-01:00"),  # after year 9999 in UTC
        alert(run, 103, generatorURL="http://x/\u0000"),
    ]
    good = [alert(run, i) for i in range(20)]
    await streams.produce(worker, [*good[:10], *bad, *good[10:]])
    await eventually(lambda: _exactly(db, run, 20), what="the 20 good alerts stored")
    letters = await dead_letters(worker, len(bad), containing=run.encode())
    assert sorted(r.value for r in letters) == sorted(v for _, v in bad)
    assert all(dict(r.headers)[DLQ_REASON_HEADER] for r in letters)
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    # And the pipeline goes on.
    await streams.produce(worker, [alert(run, 200)])
    await eventually(lambda: _exactly(db, run, 21), what="a later alert stored")


async def test_rows_postgresql_refuses_are_dead_lettered_and_the_rest_stored(
    endpoints: Endpoints, make_worker, db  # type: ignore[no-untyped-def]
) -> None:
    """PostgreSQL refuses what validation let through (here a CHECK constraint stands for any data error it
    may raise, SQLSTATE classes 22 and 23): those events alone are dead-lettered with PostgreSQL's reason."""
    import asyncpg

    async with scratch_database_url(endpoints, "refused") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ALTER TABLE alert_events ADD CONSTRAINT no_poison CHECK (labels->>'poison' IS NULL)")
            run = unique()
            good = [alert(run, i) for i in range(40)]
            poisoned = [alert(run, 100 + i, labels={"alertname": "P", "run": run, "poison": str(i)}) for i in range(2)]
            # Its resends too: each copy is dead-lettered, none stored, the good alert's resends counted.
            stream = [*good[:20], poisoned[0], good[0], poisoned[1], *good[20:], poisoned[0], good[0]]
            worker = make_worker(database_url=url)
            await worker.wait_ready()
            await streams.produce(worker, stream)

            async def stored() -> bool:
                return await conn.fetchval("SELECT count(*) FROM alert_events") == 40

            await eventually(stored, timeout=60, what="the 40 good alerts stored")
            await streams.drained(conn, worker)  # type: ignore[arg-type]
            letters = await dead_letters(worker, 3, containing=b'"poison"')
            reasons = [dict(r.headers)[DLQ_REASON_HEADER].decode() for r in letters]
            assert all("PostgreSQL refused it" in r and "no_poison" in r for r in reasons), reasons
            assert await conn.fetchval("SELECT count(*) FROM refused_messages") == 3
            assert await conn.fetchval("SELECT sum(duplicates) FROM alert_events") == 2  # good[0] twice again
            assert worker.proc is not None and worker.proc.poll() is None, worker.tail()

            # A restart replays whatever Kafka had not committed: the refused messages stay out, nothing doubles.
            worker.stop(signal.SIGKILL)
            worker = make_worker(env=worker.env)
            await worker.wait_ready()
            await streams.produce(worker, [alert(run, 500)])
            await eventually(lambda: _rows(conn, 41), timeout=60, what="a later alert stored after the restart")
            await streams.drained(conn, worker)  # type: ignore[arg-type]
            assert await conn.fetchval("SELECT sum(duplicates) FROM alert_events") == 2
            assert await conn.fetchval("SELECT count(*) FROM alert_events WHERE labels ? 'poison'") == 0
            worker.stop()
        finally:
            await conn.close()


async def _rows(conn, n: int) -> bool:  # type: ignore[no-untyped-def]
    got = await conn.fetchval("SELECT count(*) FROM alert_events")
    assert got <= n, f"{got} rows, {n} expected"
    return bool(got == n)


async def _exactly(db, run: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    got = await count(db, run)
    assert got <= n, f"{got} rows for {n} distinct events"
    return got == n
