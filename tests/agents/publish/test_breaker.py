"""A slow target and a dead one beside a healthy one: the healthy target gets every delivery while the slow one
holds its first request; the dead one's breaker opens (state in /metrics) and its deliveries land in the
dead-letter topic, which `dlq replay` delivers, once each and in order, when it is back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp

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
from tests.fixtures import Worker, eventually, free_port, unique

N = 12  # fingerprints, each firing then resolved


async def test_a_dead_target_opens_its_breaker_and_delays_no_other(
    make_worker: Callable[..., Worker], endpoints: Endpoints, db, tmp_path: Path, http: aiohttp.ClientSession
) -> None:  # type: ignore[no-untyped-def]
    healthy, slow = await TargetServer().start(), await TargetServer().start()
    slow.default = Answer(hold_s=120)  # answers nothing in the test's time
    dead = TargetServer(free_port())  # nothing listens on its port until it comes back
    fast = {"first_delay_s": 0.05, "max_delay_s": 0.2, "max_attempts": 2}
    targets = [
        {"name": "healthy", "type": "webhook", "url": f"{healthy.url}/hook"},
        {"name": "slow", "type": "webhook", "url": f"{slow.url}/hook", "delivery": {"timeout_s": 100,
         "deadline_s": 300, "concurrency": 1}},
        {"name": "dead", "type": "webhook", "url": f"{dead.url}/hook", "delivery": {**fast, "breaker_failures": 3,
         "breaker_cooldown_s": 600, "concurrency": 1}},
    ]  # fmt: skip
    worker = make_worker(env=rules_env(endpoints, tmp_path, targets))
    await worker.wait_ready()
    run = unique()
    messages = []
    for k in range(N):
        firing = notify({"alertname": "Breaker", "run": run, "k": str(k)})
        messages += [firing, resolved(firing)]
    await produce_notify(worker.endpoints.kafka_brokers, f"{worker.topic}-notify", messages)
    events = [m["event"]["id"] for m in messages]

    async def healthy_has_all() -> bool:
        return len(healthy.received) == 2 * N

    await eventually(healthy_has_all, timeout=60, what="every delivery to the healthy target")
    # Meanwhile the slow target still holds its first request, and nothing of it was given up.
    assert len(slow.received) == 1
    assert await ledger(db, events, "slow") == {}
    assert await ledger(db, events, "healthy") == {e: ("delivered", 1) for e in events}

    async def all_dead() -> list[tuple[dict[str, str], dict[str, object]]]:
        letters = [(h, m) for h, m in await dead_letters(worker) if h.get("alert-history-target") == "dead"]
        return letters if len(letters) == 2 * N else []

    letters = await eventually(all_dead, timeout=60, what=f"{2 * N} dead letters of the dead target")
    by_event = {m["event"]["id"]: (int(h["alert-history-attempts"]), h["alert-history-error"]) for h, m in letters}
    firings = sorted((by_event[e] for e in events[0::2]), key=lambda a: -a[0])
    # The first firing tried: two attempts, given up; the second: its one failure (the third in a row) opens the
    # breaker, and every firing after it goes at once, unsent.
    assert [a for a, _ in firings] == [2, 1] + [0] * (N - 2), firings
    assert firings[0][1].startswith("gave up after 2 attempts: ClientConnectorError"), firings[0]
    assert all("circuit breaker of dead is open after 3 consecutive failures" in r for _, r in firings[1:]), firings
    # Each resolve follows its firing into the dead-letter topic, after it (one fingerprint, one partition).
    assert all(by_event[e][0] == 0 and "its firing" in by_event[e][1] for e in events[1::2])
    order = [m["event"]["id"] for _, m in letters]
    assert all(order.index(f) < order.index(r) for f, r in zip(events[0::2], events[1::2], strict=True))
    async with http.get(f"{worker.url}/metrics") as r:
        exposition = await r.text()
    assert 'alert_history_breaker_state{target="dead"} 2.0' in exposition
    assert 'alert_history_breaker_state{target="healthy"} 0.0' in exposition
    assert f'alert_history_deliveries_total{{outcome="delivered",target="healthy"}} {2 * N}.0' in exposition
    assert 'alert_history_pending_deliveries{target="slow"}' in exposition

    await dead.start()  # back
    done = await replay_cli(worker.env, "--target", "dead")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"delivered: {2 * N}" in done.stdout, done.stdout
    got = [(r.body["alerts"][0]["labels"]["k"], r.body["status"]) for r in dead.received]
    assert len(got) == 2 * N and len(set(got)) == 2 * N  # each once
    for k in range(N):  # per fingerprint, the firing before its resolve
        assert got.index((str(k), "firing")) < got.index((str(k), "resolved"))
    assert await ledger(db, events, "dead") == {e: ("delivered", by_event[e][0] + 1) for e in events}
    worker.stop()
    for server in (healthy, slow, dead):
        await server.stop()
