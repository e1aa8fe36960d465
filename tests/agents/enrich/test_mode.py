"""The enrichment mode is the cluster's: set on one worker, both workers of the group publish in it."""

from __future__ import annotations

from typing import Any

import orjson

from tests.agents.enrich.conftest import send, set_mode
from tests.agents.streams import read_topic
from tests.fixtures import Worker, eventually, unique

PARTITIONS = 4


async def test_a_mode_set_on_one_worker_is_applied_by_both(make_worker, http) -> None:  # type: ignore[no-untyped-def]
    first = make_worker(partitions=PARTITIONS)
    second = make_worker(env=first.env, data_dir=str(first.workdir / "second-state"))
    await first.wait_ready()
    await second.wait_ready()
    answer = await set_mode(http, first, "transparent_with_recommendations")
    assert answer == {"mode": "transparent_with_recommendations", "scope": "cluster"}
    async with http.get(f"{second.url}/enrichment/mode") as r:
        assert (await r.json())["mode"] == "transparent_with_recommendations"

    async def every_partition_in_the_new_mode() -> dict[int, str] | None:
        # A round of alerts over many fingerprints: every partition, so both workers, publish some.
        run = unique()
        for i in range(4 * PARTITIONS):
            await send(http, first, {"alertname": "ModeProbe", "run": run, "i": str(i)})
        modes = await eventually(lambda: _modes(first, run, 4 * PARTITIONS), what="the round published")
        return modes if set(modes) == set(range(PARTITIONS)) and set(modes.values()) == {answer["mode"]} else None

    await eventually(every_partition_in_the_new_mode, timeout=60, what="both workers publishing in the new mode")


async def _modes(worker: Worker, run: str, n: int) -> dict[int, Any] | None:
    """Partition → the mode of its messages about `run` (mixed: a set), once all `n` are published."""
    messages = [m for m in await read_topic(worker.endpoints.kafka_brokers, f"{worker.topic}-notify")
                if run.encode() in m.value]  # fmt: skip
    if len(messages) < n:
        return None
    modes: dict[int, set[str]] = {}
    for m in messages:
        modes.setdefault(m.partition, set()).add(orjson.loads(m.value)["mode"])
    return {p: next(iter(v)) if len(v) == 1 else "mixed" for p, v in modes.items()}
