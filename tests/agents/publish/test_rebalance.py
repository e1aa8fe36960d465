"""A rebalance never waits on a slow target: the worker holding deliveries abandons them (their messages left
unacked), the new member gets its partitions at once, and every delivery still happens, none twice once
recorded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from app.services import Endpoints
from tests.agents.publish.targets import Answer, TargetServer, ledger, notify, produce_notify, rules_env
from tests.fixtures import Worker, eventually, unique

N = 8
HOLD_S = 20.0  # per request: N of them held one after the other would stall a rebalance for minutes


async def test_a_rebalance_does_not_wait_for_a_slow_target(
    make_worker: Callable[..., Worker], endpoints: Endpoints, db, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    slow = await TargetServer().start()
    slow.default = Answer(hold_s=HOLD_S)
    targets = [{"name": "slow", "type": "webhook", "url": f"{slow.url}/hook",
                "delivery": {"timeout_s": 60, "deadline_s": 600, "concurrency": 1}}]  # fmt: skip
    first = make_worker(env=rules_env(endpoints, tmp_path, targets))
    await first.wait_ready()
    run = unique()
    messages = [notify({"alertname": "Rebalance", "run": run, "k": str(k)}) for k in range(N)]
    await produce_notify(first.endpoints.kafka_brokers, f"{first.topic}-notify", messages)

    async def holding() -> bool:
        return len(slow.received) >= 1

    await eventually(holding, timeout=30, what="the first worker's first request held by the slow target")
    slow.default = Answer()  # from now on it answers at once; the held request still takes HOLD_S
    second = make_worker(env={**first.env, "ALERT_HISTORY_DATA_DIR": str(tmp_path / "second")})
    await second.wait_ready(timeout=HOLD_S * 2)  # partitions assigned: the rebalance did not wait for the target
    events = [m["event"]["id"] for m in messages]

    async def all_delivered() -> bool:
        got = await ledger(db, events, "slow")
        return len(got) == N and all(outcome == "delivered" for outcome, _ in got.values())

    await eventually(all_delivered, timeout=120, what="every delivery recorded after the rebalance")
    counts = Counter(r.body["alerts"][0]["labels"]["k"] for r in slow.received)
    assert set(counts) == {str(k) for k in range(N)}
    assert max(counts.values()) <= 2  # only the abandoned request in flight may go once more
    assert "rebalance: abandoning deliveries in flight" in first.log_path.read_text()
    for worker in (first, second):
        worker.stop()
    await slow.stop()
