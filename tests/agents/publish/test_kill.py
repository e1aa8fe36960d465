"""A worker SIGKILLed while it delivers: after a restart every delivery happened, and none whose success was
recorded before the kill was sent again; a repeat is only ever the one in flight (sent, not yet recorded)."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from app.services import Endpoints
from tests.agents.publish.targets import Answer, TargetServer, notify, produce_notify, resolved, rules_env
from tests.fixtures import Worker, eventually, unique

FINGERPRINTS = 100
TARGETS = ("a", "b", "c")


async def delivered(db, events: list[int]) -> set[tuple[int, str]]:  # type: ignore[no-untyped-def]
    rows = await db.fetch(
        "SELECT event_id, target FROM deliveries WHERE event_id = ANY($1::bigint[]) AND outcome = 'delivered'", events
    )
    return {(r["event_id"], r["target"]) for r in rows}


async def test_sigkill_during_deliveries_sends_none_twice_that_was_recorded(
    make_worker: Callable[..., Worker], endpoints: Endpoints, db, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    servers = {name: await TargetServer().start() for name in TARGETS}
    for server in servers.values():
        server.default = Answer(hold_s=0.05)
    targets = [{"name": n, "type": "webhook", "url": f"{s.url}/{n}", "delivery": {"concurrency": 1}}
               for n, s in servers.items()]  # fmt: skip
    worker = make_worker(env=rules_env(endpoints, tmp_path, targets))
    await worker.wait_ready()
    run = unique()
    messages = []
    for k in range(FINGERPRINTS):
        firing = notify({"alertname": "Killed", "run": run, "k": str(k)})
        messages += [firing, resolved(firing)]
    events = [int(m["event"]["id"]) for m in messages]
    await produce_notify(worker.endpoints.kafka_brokers, f"{worker.topic}-notify", messages)
    everything = len(messages) * len(TARGETS)

    async def some() -> bool:
        return len(await delivered(db, events)) >= everything // 4

    await eventually(some, timeout=60, what="a quarter of the deliveries recorded")
    worker.stop(signal.SIGKILL)
    recorded = await delivered(db, events)
    assert len(recorded) < everything, "all delivered before the kill: nothing tested"

    worker = make_worker(env=worker.env)  # the same consumer group: it resumes from the committed offsets
    await worker.wait_ready()

    async def all_delivered() -> bool:
        return len(await delivered(db, events)) == everything

    await eventually(all_delivered, timeout=120, what="every delivery recorded after the restart")
    by_id = {(m["event"]["fingerprint"], m["event"]["status"]): int(m["event"]["id"]) for m in messages}
    repeats = 0
    for name, server in servers.items():
        sent = [by_id[(r.body["alerts"][0]["fingerprint"], r.body["status"])] for r in server.received]
        counts = Counter(sent)
        assert set(counts) == set(events), f"{name}: some deliveries never happened"
        twice = {e for e, n in counts.items() if n > 1}
        assert not {(e, name) for e in twice} & recorded, f"{name}: a delivery recorded before the kill sent again"
        assert max(counts.values()) <= 2, f"{name}: a delivery sent more than once more"
        repeats += len(twice)
        for firing, resolve in zip(events[0::2], events[1::2], strict=True):  # the resolve after every firing
            assert max(i for i, e in enumerate(sent) if e == firing) < sent.index(resolve), name
    print(f"publish kill: {len(recorded)} of {everything} deliveries recorded at the SIGKILL, "
          f"{repeats} sent once more (in flight, not recorded), none twice after a recorded success")  # fmt: skip
    worker.stop()
    for server in servers.values():
        await server.stop()
