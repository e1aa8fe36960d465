"""Property, on PostgreSQL: the episodes the sink keeps answer "what was firing at T" as the definition does.

Random streams of a few alerts (firing and resolved messages, startsAt out of order, resends byte-identical or
with a new endsAt, silences longer than the dedup window so an old episode comes back as a backfill would) go
through the real decider and the real sink, in random batches, into a migrated database. The reference below
is the definition (README, Time travel) applied in Python to the messages the history keeps (every one but a
LATE or replayed copy): an episode (fingerprint, startsAt) is firing on [startsAt, end), end being its last
resolve's endsAt, else its last firing message's endsAt, open when that has none. alert_episodes must hold
exactly those episodes, and the alerts firing at random moments (and at every episode's edges) must agree.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import state
from agents.history.decider import Batch, Decider, Rules
from app.fingerprint import fingerprint
from app.records import EPOCH, NEW_ROW, Decision, FingerprintState, Outcome
from app.services import Endpoints
from sinks.postgres import PostgresSink
from tests.fixtures import scratch_database_url, truncate_history
from web.queries import FIRING_AT

EXAMPLES = int(os.environ.get("ALERT_HISTORY_EPISODE_EXAMPLES", "120"))
TOPIC = "alerts"
WINDOW_MS = 60_000
RULES = Rules(window_ms=WINDOW_MS, flap=state.FlapRule(window_ms=120_000, threshold=4))
BASE = datetime(2026, 6, 1, 12, tzinfo=UTC)  # the alerts' own times: minutes from here
RECEIVED_MS = (datetime(2026, 6, 1, 12, 30, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
ALERTS = [{"alertname": "Episode", "n": str(i)} for i in range(3)]

# One step: which alert, its status, startsAt (minute), endsAt (minutes after startsAt; None: none sent), the
# pause before it (a silence longer than the dedup window makes the next message a first sighting again), and
# what it is: a new message, a byte-identical resend of that alert's previous one, or that one with endsAt moved
# (Prometheus' resends) and a new summary.
step = st.tuples(
    st.integers(0, len(ALERTS) - 1),
    st.sampled_from(["firing", "resolved"]),
    st.integers(0, 6),
    st.one_of(st.none(), st.integers(-2, 12)),
    st.sampled_from(["near", "near", "near", "silence"]),
    st.sampled_from(["new", "new", "resend", "extend"]),
)


@dataclass(frozen=True)
class Sent:
    offset: int
    received_ms: int
    fingerprint: str
    status: str
    starts_at: datetime
    ends_at: datetime | None
    annotation: str


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def stream(steps: Sequence[tuple[Any, ...]], rng: random.Random) -> tuple[list[ConsumerRecord], list[Sent]]:
    records: list[ConsumerRecord] = []
    sent: list[Sent] = []
    last: dict[int, tuple[bytes, Sent]] = {}
    clock = RECEIVED_MS
    for i, (alert, status, start_min, end_min, pause, kind) in enumerate(steps):
        clock += WINDOW_MS + 1 if pause == "silence" else rng.randrange(0, 5000)
        if kind == "resend" and alert in last:
            value, prev = last[alert]
        else:
            starts = BASE + timedelta(minutes=start_min)
            if kind == "extend" and alert in last:
                status, starts = last[alert][1].status, last[alert][1].starts_at
            ends = None if end_min is None else starts + timedelta(minutes=end_min)
            prev = Sent(0, 0, fingerprint(ALERTS[alert]), status, starts, ends, f"message {i}")
            body: dict[str, Any] = {"labels": ALERTS[alert], "annotations": {"summary": prev.annotation},
                                    "status": status, "startsAt": _iso(starts)}  # fmt: skip
            if ends is not None:
                body["endsAt"] = _iso(ends)
            value = orjson.dumps(body)
        one = Sent(len(records), clock, prev.fingerprint, prev.status, prev.starts_at, prev.ends_at, prev.annotation)
        records.append(
            ConsumerRecord(TOPIC, 0, len(records), clock, 1, prev.fingerprint.encode(), value, None, 0, 0, [])
        )
        sent.append(one)
        last[alert] = (value, one)
    return records, sent


@dataclass
class Episode:
    resolve_end: datetime | None = None  # set: it has a resolve
    firing_end: datetime | None = None
    annotation: str = ""

    @property
    def end(self) -> datetime | None:
        return self.resolve_end if self.resolve_end is not None else self.firing_end


def reference(sent: Sequence[Sent], kept: dict[int, Decision]) -> dict[tuple[str, datetime], Episode]:
    """The definition, over the messages the history keeps (`kept`: offset → decision)."""
    episodes: dict[tuple[str, datetime], Episode] = {}
    resolve_row_ms: dict[tuple[str, datetime], int] = {}  # when the episode's latest resolve row was received
    for m in sent:
        decision = kept.get(m.offset)
        if decision is None:
            continue
        key = (m.fingerprint, m.starts_at)
        ep = episodes.setdefault(key, Episode())
        ep.annotation = m.annotation
        if m.status == "resolved":
            if decision in NEW_ROW:
                resolve_row_ms[key] = m.received_ms
            # A resolve without endsAt ended the episode when its resolve was stored.
            ep.resolve_end = m.ends_at or EPOCH + timedelta(milliseconds=resolve_row_ms[key])
        else:
            ep.firing_end = m.ends_at
    return episodes


def firing_at(episodes: dict[tuple[str, datetime], Episode], t: datetime) -> set[str]:
    return {fp for (fp, starts), ep in episodes.items() if starts <= t and (ep.end is None or t < ep.end)}


class Pipeline:
    """The decider and the sink as the history agent runs them, batch after batch (no crashes: the decider's
    own property test has those)."""

    def __init__(self, sink: PostgresSink) -> None:
        self.sink = sink
        self.table: dict[str, FingerprintState] = {}
        self.decider = Decider(RULES, topic=TOPIC, dlq_topic=f"{TOPIC}-dlq", topic_code=1, lookup=self.lookup)
        self.outcomes: list[Outcome] = []

    def lookup(self, fingerprint: str, partition: int) -> FingerprintState | None:
        return self.table.get(fingerprint)

    async def run(self, records: list[ConsumerRecord], rng: random.Random) -> None:
        pos = 0
        while pos < len(records):
            chunk = records[pos : pos + rng.randint(1, 6)]
            pos += len(chunk)
            batch = Batch()
            self.decider.decide(batch, chunk, applied={}, partitions=1, refused={})
            assert not batch.out, "every generated message is valid"
            await self.sink.write(TOPIC, batch.outcomes, batch.next_offsets)
            self.outcomes += batch.outcomes
            for fp, st_ in batch.overlay.items():
                if st_ is None:
                    self.table.pop(fp, None)
                else:
                    self.table[fp] = st_


@pytest.fixture(scope="module")
def database(endpoints: Endpoints) -> Any:
    loop = asyncio.new_event_loop()
    ctx = scratch_database_url(endpoints, "episodes")
    url = loop.run_until_complete(ctx.__aenter__())
    sink = PostgresSink(url, pool_size=2)
    loop.run_until_complete(sink.open())
    yield loop, sink
    loop.run_until_complete(sink.close())
    loop.run_until_complete(ctx.__aexit__(None, None, None))
    loop.close()


async def _stored(conn: asyncpg.Connection) -> dict[tuple[str, datetime], tuple[datetime | None, bool, str]]:
    rows = await conn.fetch("SELECT fingerprint, starts_at, ends_at, resolved, annotations FROM alert_episodes")
    return {(r["fingerprint"], r["starts_at"]): (r["ends_at"], r["resolved"], r["annotations"]["summary"])
            for r in rows}  # fmt: skip


def _expected(episodes: dict[tuple[str, datetime], Episode]) -> dict[tuple[str, datetime], Any]:
    return {k: (ep.end, ep.resolve_end is not None, ep.annotation) for k, ep in episodes.items()}


async def check(sink: PostgresSink, steps: Sequence[tuple[Any, ...]], seed: int, moments: list[int]) -> None:
    rng = random.Random(seed)
    assert sink.pool is not None
    async with sink.pool.acquire() as conn:
        await truncate_history(conn)
        records, sent = stream(steps, rng)
        pipeline = Pipeline(sink)
        await pipeline.run(records, rng)
        kept = {
            o.position.offset: o.decision
            for o in pipeline.outcomes
            if o.decision not in (Decision.LATE, Decision.REPLAYED)
        }
        episodes = reference(sent, kept)
        assert await _stored(conn) == _expected(episodes)

        edges = {t for (_, s), ep in episodes.items() for t in (s, ep.end) if t is not None}
        instants = {BASE + timedelta(seconds=s) for s in moments}
        instants |= {t + d for t in edges for d in (-timedelta(milliseconds=1), timedelta(0))}
        for t in sorted(instants):
            got = await conn.fetch(f"SELECT fingerprint FROM alert_episodes WHERE {FIRING_AT}", t)
            assert {r["fingerprint"] for r in got} == firing_at(episodes, t), t

        # The rebuild from alert_events: the same, where the rows and each alert's current state tell it (a resend's
        # new endsAt survives only for the current episode: the messages it knows are the rows and the last one).
        # Rebuilding everything takes the bulk path (migration 014): the secondary indexes dropped, built again.
        indexes = await _secondary_indexes(conn)
        await conn.execute("SELECT alert_history_episodes_rebuild('-infinity', 'infinity')")
        rebuilt_indexes = await _secondary_indexes(conn)
        assert indexes.keys() == rebuilt_indexes.keys(), "the same indexes, built again"
        assert not set(indexes.values()) & set(rebuilt_indexes.values()), "the bulk path built them again"
        last_decoded = {}
        for o in pipeline.outcomes:
            if o.event is not None and o.decision not in (Decision.LATE, Decision.REPLAYED):
                last_decoded[o.fingerprint] = o.position.offset
        rows = {o.position.offset: o.decision for o in pipeline.outcomes if o.decision in NEW_ROW}
        rebuilt = reference(sent, {**rows, **{off: kept[off] for off in last_decoded.values()}})
        assert await _stored(conn) == _expected(rebuilt)
        for t in sorted(instants):
            got = await conn.fetch(f"SELECT fingerprint FROM alert_episodes WHERE {FIRING_AT}", t)
            assert {r["fingerprint"] for r in got} == firing_at(rebuilt, t), t
        await conn.execute("SELECT alert_history_episodes_rebuild('-infinity', 'infinity')")
        assert await _stored(conn) == _expected(rebuilt), "the rebuild is idempotent"

        # A small range (under a fifth of the episodes) takes the row-by-row path, indexes kept, to the same rows.
        _, start = sorted(rebuilt)[len(rebuilt) // 2]
        sharing = sum(1 for _, s in rebuilt if s == start)
        if sharing * 4 < len(rebuilt) - sharing:
            indexes = await _secondary_indexes(conn)
            await conn.execute(
                "SELECT alert_history_episodes_rebuild($1, $2)", start, start + timedelta(milliseconds=1)
            )
            assert await _secondary_indexes(conn) == indexes, "the row-by-row path keeps the indexes"
            assert await _stored(conn) == _expected(rebuilt)


async def _secondary_indexes(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT i.indexrelid::regclass::text AS name, i.indexrelid::int AS oid FROM pg_index AS i
           WHERE i.indrelid = 'alert_episodes'::regclass AND NOT i.indisprimary"""
    )
    return {r["name"]: r["oid"] for r in rows}


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
@given(
    steps=st.lists(step, min_size=1, max_size=30),
    seed=st.integers(0, 2**32),
    moments=st.lists(st.integers(-60, 20 * 60), max_size=10),
)
def test_episodes_answer_what_was_firing_as_the_definition(
    database: tuple[asyncio.AbstractEventLoop, PostgresSink], steps: list[tuple[Any, ...]], seed: int,
    moments: list[int],
) -> None:  # fmt: skip
    loop, sink = database
    loop.run_until_complete(check(sink, steps, seed, moments))


def test_the_streams_reach_every_case(database: tuple[asyncio.AbstractEventLoop, PostgresSink]) -> None:
    """The property above is only as strong as its streams: over some of them each case happens."""
    rng = random.Random(7)
    seen: set[str] = set()
    for _ in range(50):
        steps = [
            (rng.randrange(3), rng.choice(["firing", "resolved"]), rng.randrange(7),
             rng.choice([None, rng.randrange(-2, 13)]), rng.choice(["near", "near", "silence"]),
             rng.choice(["new", "new", "resend", "extend"]))
            for _ in range(20)
        ]  # fmt: skip
        records, sent = stream(steps, rng)
        pipeline = Pipeline(database[1])
        database[0].run_until_complete(_prepare_and_run(database[1], pipeline, records, rng))
        latest: dict[str, datetime] = {}
        for o in pipeline.outcomes:
            seen.add(o.decision.value)
            if o.event is not None and o.decision in NEW_ROW:
                if o.event.starts_at < latest.get(o.fingerprint, o.event.starts_at):
                    seen.add("an older episode stored after a newer one (backfill)")
                latest[o.fingerprint] = max(o.event.starts_at, latest.get(o.fingerprint, o.event.starts_at))
            if o.decision is Decision.DUPLICATE and o.event is not None:
                seen.add("resend with new content")
        starts = [m.starts_at for m in sent]
        if any(b < a for a, b in itertools.pairwise(starts)):
            seen.add("startsAt out of order")
    assert seen >= {
        "first_seen",
        "transition",
        "duplicate",
        "late",
        "resend with new content",
        "startsAt out of order",
        "an older episode stored after a newer one (backfill)",
    }


async def _prepare_and_run(
    sink: PostgresSink, pipeline: Pipeline, records: list[ConsumerRecord], rng: random.Random
) -> None:
    assert sink.pool is not None
    async with sink.pool.acquire() as conn:
        await truncate_history(conn)
    await pipeline.run(records, rng)


def test_an_episode_firing_at_t_has_one_of_ts_slots(database: tuple[asyncio.AbstractEventLoop, PostgresSink]) -> None:
    """Migration 014's slots, at the edges that matter: lengths at and around powers of two of 5 minutes, moments
    one microsecond either side of bucket boundaries, before 1970 too: every episode firing at T has one of T's
    slots."""
    rng = random.Random(14)
    unit = 300_000_000  # µs
    starts, ends, moments = [], [], []
    for _ in range(20_000):
        k = rng.randrange(0, 20)
        bucket = (rng.randrange(-2_000_000, 6_000_000) // (1 << k)) * unit * (1 << k)
        s_us = bucket + rng.choice([0, 1, -1, rng.randrange(unit << k)])
        length = max(1, (unit << rng.randrange(0, 20)) + rng.choice([0, 1, -1, -rng.randrange(unit)]))
        t_us = s_us + rng.choice([0, length - 1, rng.randrange(length)])
        starts.append(EPOCH + timedelta(microseconds=s_us))
        ends.append(EPOCH + timedelta(microseconds=s_us + length))
        moments.append(EPOCH + timedelta(microseconds=t_us))

    async def misses() -> list[Any]:
        assert database[1].pool is not None
        return await database[1].pool.fetch(
            """SELECT s, e, t FROM unnest($1::timestamptz[], $2::timestamptz[], $3::timestamptz[]) AS x(s, e, t)
               WHERE s <= t AND t < e AND NOT alert_history_episode_slot(s, e) = ANY(alert_history_episode_slots(t))""",
            starts, ends, moments,
        )  # fmt: skip

    assert database[0].run_until_complete(misses()) == []
