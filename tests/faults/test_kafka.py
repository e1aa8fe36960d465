"""Kafka faults under webhook load: a cluster's partition leader killed, a single broker frozen.

A 2xx from the bridge means the broker acknowledged every alert in it (acks=all; on a cluster, two of the three
replicas): whatever happens to a broker after that, the alert is stored, once.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.agents.streams import drained
from tests.faults.kafka import partition_leader, replication
from tests.faults.load import WebhookLoad, verify

PRODUCE_BOUND_S = 5  # the bridge answers 503 when Kafka has not acknowledged a batch within this
ANSWER_MARGIN_S = 5
KAFKA_FROZEN_S = 20
AFTER_KILL_S = 15


@pytest.mark.slow
async def test_kill_9_of_a_partition_leader_in_a_cluster_of_three(own_services, fault_workers, db) -> None:  # type: ignore[no-untyped-def]
    own = await own_services(kafka_nodes=3)
    brokers = own.endpoints.kafka_brokers
    worker = fault_workers(own.endpoints)
    await worker.wait_ready()
    changelog = f"{worker.env['ALERT_HISTORY_APP_ID']}-fingerprint-state-changelog"
    assignor = f"{worker.env['ALERT_HISTORY_APP_ID']}-__assignor-__leader"
    topics = [worker.topic, f"{worker.topic}-dlq", changelog, assignor, "__consumer_offsets"]
    replicated = await replication(brokers, topics)
    assert all((r.replicas, r.in_sync, r.min_insync) == (3, 3, 2) for r in replicated.values()), replicated

    async with WebhookLoad(worker.url) as load:
        await load.wait_accepted(200)
        leader = await partition_leader(brokers, worker.topic, 0)
        own.stack.process("kafka", node=leader).kill()
        await asyncio.sleep(AFTER_KILL_S)  # the load goes on against the two brokers left
        await load.wait_accepted(200, timeout=60)
    assert worker.proc is not None and worker.proc.poll() is None, f"worker exited:\n{worker.tail()}"
    await drained(db, worker, timeout=180)
    verdict = await verify(db, load, f"kafka cluster of 3, kill -9 of node {leader} leading {worker.topic}/0")
    verdict.assert_exactly_once()
    assert set(verdict.statuses) <= {202, 503}, verdict.line()
    assert all(a.retry_after for a in load.answers if a.status == 503), verdict.line()


@pytest.mark.slow
async def test_single_kafka_frozen_20_s(own_services, fault_workers, db) -> None:  # type: ignore[no-untyped-def]
    own = await own_services(kafka_nodes=1)
    worker = fault_workers(own.endpoints)
    await worker.wait_ready()
    async with WebhookLoad(worker.url) as load:
        await load.wait_accepted(200)
        with own.stack.process("kafka").frozen():
            await asyncio.sleep(KAFKA_FROZEN_S)
        await load.wait_accepted(300, timeout=90)  # all good after the thaw
    assert worker.proc is not None and worker.proc.poll() is None, f"worker exited:\n{worker.tail()}"
    await drained(db, worker, timeout=180)
    verdict = await verify(db, load, f"single kafka frozen {KAFKA_FROZEN_S} s")
    verdict.assert_exactly_once()
    refused = [a for a in load.answers if a.status == 503]
    assert refused, f"no 503 in a {KAFKA_FROZEN_S} s freeze: {verdict.line()}"
    assert set(verdict.statuses) <= {202, 503} and not verdict.errors, verdict.line()
    assert all(a.retry_after for a in refused), f"503 without Retry-After: {verdict.line()}"
    slowest = max(a.seconds for a in load.answers)
    assert slowest < PRODUCE_BOUND_S + ANSWER_MARGIN_S, f"an answer took {slowest:.1f} s: {verdict.line()}"
