"""Retries, Retry-After, order per fingerprint and dead letters, through a real worker to real local targets.

One worker for the module, one target per test (each matching its own label), each its own local server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from app.services import Endpoints
from tests.agents.publish.targets import (
    Answer,
    TargetServer,
    dead_letters,
    ledger,
    notify,
    produce_notify,
    replay_cli,
    resolved,
    rules_env,
)
from tests.fixtures import Worker, eventually, unique

NAMES = ("flaky", "paced", "strict", "ordered")
FAST = {"first_delay_s": 0.05, "max_delay_s": 0.2, "deadline_s": 30, "max_attempts": 5, "breaker_failures": 50}


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[dict[str, TargetServer]]:
    started = {name: await TargetServer().start() for name in NAMES}
    yield started
    for server in started.values():
        await server.stop()


@pytest.fixture(scope="module")
async def publisher(
    make_worker: Callable[..., Worker], endpoints: Endpoints, servers: dict[str, TargetServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Worker:  # fmt: skip
    targets = [
        {"name": name, "type": "webhook", "url": f"{servers[name].url}/{name}", "match": [f'target="{name}"'],
         "delivery": FAST}
        for name in NAMES
    ]  # fmt: skip
    worker = make_worker(env=rules_env(endpoints, tmp_path_factory.mktemp("publish"), targets))
    await worker.wait_ready()
    return worker


def ids(server: TargetServer) -> list[str]:
    return [r.body["alerts"][0]["labels"]["run"] + ":" + r.body["status"] for r in server.received]


async def test_500_500_200_is_delivered_once(publisher: Worker, servers: dict[str, TargetServer], db) -> None:  # type: ignore[no-untyped-def]
    server = servers["flaky"]
    server.script.extend([Answer(500, "busy"), Answer(503, "busy")])
    message = notify({"alertname": "Flaky", "target": "flaky", "run": unique()})
    await produce_notify(publisher.endpoints.kafka_brokers, f"{publisher.topic}-notify", [message])
    event = message["event"]["id"]

    async def recorded() -> dict[str, tuple[str, int]]:
        return await ledger(db, [event], "flaky")

    assert await eventually(recorded, timeout=30, what="the delivery recorded") == {event: ("delivered", 3)}
    assert len(server.received) == 3  # two refused, one 2xx: delivered once, never again
    assert not [h for h, _ in await dead_letters(publisher) if h.get("alert-history-target") == "flaky"]


async def test_429_retry_after_is_honoured(publisher: Worker, servers: dict[str, TargetServer], db) -> None:  # type: ignore[no-untyped-def]
    server = servers["paced"]
    server.script.append(Answer(429, "rate limited", {"Retry-After": "2"}))
    message = notify({"alertname": "Paced", "target": "paced", "run": unique()})
    await produce_notify(publisher.endpoints.kafka_brokers, f"{publisher.topic}-notify", [message])
    event = message["event"]["id"]
    await eventually(lambda: ledger(db, [event], "paced"), timeout=30, what="the delivery recorded")
    first, second = server.received
    assert second.at - first.at >= 2.0, second.at - first.at  # the gap the target saw
    assert await ledger(db, [event], "paced") == {event: ("delivered", 2)}


async def test_a_resolve_waits_for_its_firing_that_is_being_retried(
    publisher: Worker, servers: dict[str, TargetServer], db
) -> None:  # type: ignore[no-untyped-def]
    server = servers["ordered"]
    server.script.extend([Answer(500), Answer(500), Answer(500)])  # the firing is retried three times
    run = unique()
    firing = notify({"alertname": "Ordered", "target": "ordered", "run": run})
    resolve = resolved(firing)
    await produce_notify(publisher.endpoints.kafka_brokers, f"{publisher.topic}-notify", [firing, resolve])
    events = [m["event"]["id"] for m in (firing, resolve)]

    async def both_recorded() -> bool:
        return len(await ledger(db, events, "ordered")) == 2

    await eventually(both_recorded, timeout=30, what="both deliveries recorded")
    mine = [s for s in ids(server) if s.startswith(run)]
    assert mine == [f"{run}:firing"] * 4 + [f"{run}:resolved"]


async def test_a_resolve_follows_its_dead_lettered_firing_and_replay_delivers_both_in_order(
    publisher: Worker, servers: dict[str, TargetServer], db
) -> None:  # type: ignore[no-untyped-def]
    server = servers["strict"]
    server.script.append(Answer(400, "bad request"))  # fatal: the firing goes to the dead-letter topic at once
    run = unique()
    firing = notify({"alertname": "Strict", "target": "strict", "run": run})
    resolve = resolved(firing)
    await produce_notify(publisher.endpoints.kafka_brokers, f"{publisher.topic}-notify", [firing, resolve])
    events = [firing["event"]["id"], resolve["event"]["id"]]

    async def both_dead() -> list[tuple[dict[str, str], dict[str, object]]]:
        letters = [(h, m) for h, m in await dead_letters(publisher) if h.get("alert-history-target") == "strict"]
        return letters if len(letters) == 2 else []

    letters = await eventually(both_dead, timeout=30, what="the firing and its resolve dead-lettered")
    assert [m for _, m in letters] == [firing, resolve]  # the notify message as it was
    assert letters[0][0]["alert-history-error"] == "refused: HTTPStatusError: HTTP 400: bad request"
    assert letters[0][0]["alert-history-attempts"] == "1"
    assert "its firing (same startsAt) is in the dead-letter topic" in letters[1][0]["alert-history-error"]
    assert letters[1][0]["alert-history-attempts"] == "0"
    assert len(server.received) == 1  # the resolve never reached the target
    assert await ledger(db, events, "strict") == {events[0]: ("dead_lettered", 1), events[1]: ("dead_lettered", 0)}

    dry = await replay_cli(publisher.env, "--target", "strict", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    # Decided against the ledger as it is: the resolve goes once its firing is delivered.
    assert "send: 1" in dry.stdout and "follows firing: 1" in dry.stdout, dry.stdout
    assert len(server.received) == 1
    done = await replay_cli(publisher.env, "--target", "strict")
    assert done.returncode == 0, done.stderr
    assert "delivered: 2" in done.stdout, done.stdout
    assert ids(server) == [f"{run}:firing"] * 2 + [f"{run}:resolved"]
    assert await ledger(db, events, "strict") == {events[0]: ("delivered", 2), events[1]: ("delivered", 1)}
    again = await replay_cli(publisher.env, "--target", "strict")
    assert again.returncode == 0 and "already delivered: 2" in again.stdout, again.stdout
    assert len(server.received) == 3  # idempotent: nothing sent twice
