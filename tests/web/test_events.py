"""`GET /events`: live events through the real pipeline, filtered as /history; a resume after a disconnect gives the
missed events once; the cursor's format; the pure parts (cursor, one client's bounded queue)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from app.matchers import parse_filters
from tests.fixtures import Worker, eventually, unique
from tests.web.sse_client import open_stream
from tests.web.test_webhook import am_alert, history, webhook
from web import sse

# ---- pure: the cursor and one client's queue --------------------------------------------------------------------


def test_a_cursor_is_compact_and_round_trips() -> None:
    position = [0, 35, 36, 1_000_000, 2**63 - 1, 7, 0, 12]
    raw = sse.encode_cursor(position)
    assert raw.startswith("v1.") and len(raw) < 40
    assert sse.decode_cursor(raw, 8) == position


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("v1.0.0", "2 partitions, the events topic 4"),
        ("v2.0.0.0.0", "not a cursor"),
        ("v1.0.-1.0.0", "not a cursor"),
        ("v1.0.A.0.0", "not a cursor"),
        ("v1.0.0.0.zzzzzzzzzzzzz", "past Kafka's largest"),
        ("1130297953353728", "not a cursor"),
        ("v1." + ".".join(["0"] * 400), "not a cursor"),
    ],
)
def test_a_cursor_not_of_this_topic_is_refused_saying_why(raw: str, why: str) -> None:
    with pytest.raises(sse.CursorError, match=why):
        sse.decode_cursor(raw, 4)


def _subscriber(budget: int = 1000, matchers: str | None = None, floor: list[int] | None = None) -> sse.Subscriber:
    floor = floor or [0, 0]
    return sse.Subscriber(parse_filters([matchers] if matchers else []), list(floor), floor, budget)


def test_each_queued_event_carries_the_position_right_after_it_and_skipped_events_move_it() -> None:
    sub = _subscriber(matchers='team="db"')
    db, web = {"labels": {"team": "db"}}, {"labels": {"team": "web"}}
    sub.offer(0, 0, db, b"a")
    sub.offer(1, 0, web, b"b")  # filtered out, but considered: the position moves past it
    sub.offer(1, 1, db, b"c")
    sub.offer(0, 1, web, b"d")
    assert sub.take() == (b"a", (1, 0))
    assert sub.take() == (b"c", (1, 2))
    assert sub.take() is None
    assert sub.position == [2, 2]  # what a heartbeat sends once the queue is empty


def test_records_below_the_resume_floor_were_delivered_before_and_are_skipped() -> None:
    sub = _subscriber(floor=[5, 0])
    event = {"labels": {"a": "b"}}
    sub.offer(0, 4, event, b"old")
    sub.offer(0, 5, event, b"new")
    assert sub.take() == (b"new", (6, 0)) and sub.take() is None


def test_a_client_whose_queue_passes_its_budget_is_dropped_and_its_queue_freed() -> None:
    reasons: list[str] = []
    sub = sse.Subscriber([], [0], [0], budget_bytes=25, on_drop=reasons.append)
    event = {"labels": {"a": "b"}}
    for offset in range(3):
        sub.offer(0, offset, event, b"x" * 10)
    assert sub.dropped == "slow" and reasons == ["slow"]
    assert sub.queued_bytes == 0 and not sub.queue
    sub.offer(0, 3, event, b"y")  # nothing more for a dropped client
    assert sub.take() is None and reasons == ["slow"]


def test_values_that_are_not_events_never_match() -> None:
    assert not sse.matches([], None) and not sse.matches([], {"labels": "x"}) and sse.matches([], {"labels": {}})


# ---- through the pipeline -----------------------------------------------------------------------------------------


async def _post(http: aiohttp.ClientSession, worker: Worker, alerts: list[dict[str, object]]) -> None:
    async with http.post(f"{worker.url}/webhook", json=webhook(alerts)) as r:
        assert r.status == 202, await r.text()


async def test_an_event_stored_after_the_stream_opened_arrives_filtered(worker: Worker, http) -> None:  # type: ignore[no-untyped-def]
    run, other = unique(), unique()
    wanted = {"alertname": "LiveOne", "run": run, "severity": "critical"}
    async with open_stream(http, worker.url, filter=f'run="{run}",severity=~"crit.*"') as stream:
        await _post(http, worker, [am_alert({"alertname": "LiveOne", "run": other}), am_alert(wanted)])
        resolved = am_alert(wanted, status="resolved", ends="2026-11-24T10:05:00Z")
        await _post(http, worker, [am_alert({**wanted, "severity": "info"}), resolved])
        got = await stream.events(2)
        cursor = stream.cursor
    assert [(e["labels"], e["status"]) for e in got] == [(wanted, "firing"), (wanted, "resolved")]
    # The event exactly as /history shows it (but for the resends counted on it since).
    stored = await history(http, worker, filter=f'run="{run}",severity="critical"')
    assert [e["id"] for e in got] == [e["id"] for e in reversed(stored)]
    assert got[0]["fingerprint"] == wanted_fp(wanted) and got[0]["classification"] is None
    assert cursor is not None and cursor.startswith("v1.")


def wanted_fp(labels: dict[str, str]) -> str:
    return str(am_alert(labels)["fingerprint"])


async def test_a_resume_with_last_event_id_gives_the_missed_events_once(worker: Worker, http) -> None:  # type: ignore[no-untyped-def]
    run = unique()
    alert = lambda i: am_alert({"alertname": "Resume", "run": run, "i": str(i)})  # noqa: E731
    async with open_stream(http, worker.url, filter=f'run="{run}"') as stream:
        await _post(http, worker, [alert(0)])
        (first,) = await stream.events(1)
        cursor = stream.cursor
    assert cursor is not None

    # Disconnected: twenty alerts (on every partition) are stored meanwhile.
    await _post(http, worker, [alert(i) for i in range(1, 21)])

    async def stored() -> bool:
        return len(await history(http, worker, filter=f'run="{run}"', limit="100")) == 21

    await eventually(stored, what="the 20 alerts posted while disconnected stored")

    async with open_stream(http, worker.url, filter=f'run="{run}"', last_event_id=cursor) as stream:
        await _post(http, worker, [alert(99)])  # posted after the resume: live, and last
        got = await stream.until(lambda e: e["labels"]["i"] == "99")
    numbers = [int(e["labels"]["i"]) for e in got]
    assert sorted(numbers) == [*range(1, 21), 99], "each missed event once, the first one not again"
    assert numbers[-1] == 99
    assert first["labels"]["i"] == "0"


async def test_the_cursor_parameter_resumes_too_and_a_foreign_cursor_is_a_400(worker: Worker, http) -> None:  # type: ignore[no-untyped-def]
    run = unique()
    async with open_stream(http, worker.url, filter=f'run="{run}"') as stream:
        start = stream.cursor
    await _post(http, worker, [am_alert({"alertname": "ByCursor", "run": run})])
    async with open_stream(http, worker.url, filter=f'run="{run}"', cursor=start) as stream:
        (event,) = await stream.events(1)
    assert event["labels"]["run"] == run
    for headers, params in (({"Last-Event-ID": "v1.0"}, {}), ({}, {"cursor": "12345"})):
        async with http.get(f"{worker.url}/events", headers=headers, params=params) as r:
            assert r.status == 400
            error = (await r.json())["error"]
            assert error.startswith("Last-Event-ID:" if headers else "cursor:"), error
    async with http.get(f"{worker.url}/events", params={"filter": 'a=~"("'}) as r:
        assert r.status == 400 and (await r.json())["error"].startswith("filter:")


async def test_heartbeats_come_while_nothing_matches(make_worker, http) -> None:  # type: ignore[no-untyped-def]
    node = make_worker(pipeline_enabled=False, events_heartbeat=0.5)
    await node.wait_ready(partitions=False)
    try:
        async with open_stream(http, node.url, filter=f'run="{unique()}"') as stream:
            frames = [await stream.next_frame(timeout=10) for _ in range(2)]
        assert all(f.comment and f.data is None for f in frames)
    finally:
        await asyncio.to_thread(node.stop)
