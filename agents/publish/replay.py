"""`alert-history dlq replay [--target NAME] [--dry-run]`: the notify dead-letter topic, re-sent through the same
lanes as the agent's (ledger, retries, breaker, order per fingerprint), from its beginning to its end now.

Idempotent: what the ledger records as delivered is skipped, and so is what a later event of its fingerprint
superseded; what fails again goes to the dead-letter topic again (a new message), so a later replay finds it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from tqdm import tqdm

from agents.publish import targets as target_file
from agents.publish.decider import Key, Verdict, decide
from agents.publish.lane import TARGET_HEADER, Job, Lane, Shared
from agents.publish.ledger import Ledger
from app.errors import ConfigError, InvalidAlert
from app.produce import OutMessage
from app.settings import Settings
from app.topics import end_offsets
from sinks.publishers.message import parse

REPLAY_IN_FLIGHT = 1000  # dead letters of one target taken into its lane at once


@dataclass
class Report:
    read: int = 0
    other_targets: int = 0  # dead letters of targets other than --target
    unknown_target: int = 0  # of a target the rules file no longer has
    unreadable: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # delivered, already_delivered, superseded, …
    errors: list[BaseException] = field(default_factory=list)

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would be" if dry_run else "were"
        out = [f"dead letters read: {self.read}"]
        out += [f"  {outcome.replace('_', ' ')}: {n}" for outcome, n in sorted(self.outcomes.items())]
        for what, n in (("of other targets (skipped)", self.other_targets),
                        ("of targets not in the rules file (skipped)", self.unknown_target),
                        ("unreadable (skipped)", self.unreadable)):  # fmt: skip
            if n:
                out.append(f"  {what}: {n}")
        if dry_run:
            out.append(f"(dry run: nothing was sent; 'send' counts what {verb} re-sent)")
        return out


async def read_dead_letters(brokers: str, topic: str) -> AsyncIterator[ConsumerRecord]:
    """Every message of the topic up to its end now, each partition in offset order."""
    ends = await end_offsets(brokers, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)  # no group: reads only
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p, end in ends.items() if end > 0]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        todo = {tp for tp in tps}
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=1000, max_records=1000)).items():
                for record in records:
                    if record.offset < ends[tp.partition]:
                        yield record
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp.partition]}
    finally:
        await consumer.stop()


async def replay(settings: Settings, target: str | None = None, dry_run: bool = False, progress: bool = True) -> Report:
    assert settings.database_url and settings.kafka_brokers
    lanes_by_name = {t.name: t for t in target_file.load(settings.rules_file, settings.public_url)}
    if target is not None and target not in lanes_by_name:
        raise ConfigError(f"--target {target}: the rules file has no such target (it has: {', '.join(lanes_by_name)})")
    report = Report()
    ledger = await Ledger.open(settings.database_url, size=2)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_brokers, acks="all")
    await producer.start()
    session = aiohttp.ClientSession()

    async def dead_letters(messages: Sequence[OutMessage]) -> None:
        for m in messages:
            await producer.send_and_wait(m.topic, m.value, key=m.key, headers=list(m.headers))

    shared = Shared(ledger, session, dead_letters, settings.notify_dlq_topic, report.errors.append, replay=True,
                    verdicts=report.outcomes)  # fmt: skip
    lanes: dict[str, Lane] = {}
    bar = tqdm(desc="dlq replay", unit=" letters", disable=None if progress else True)  # None: only on a terminal
    try:
        async for record in read_dead_letters(settings.kafka_brokers, settings.notify_dlq_topic):
            report.read += 1
            name = dict(record.headers).get(TARGET_HEADER, b"").decode()
            if target is not None and name != target:
                report.other_targets += 1
                bar.update()
                continue
            try:
                message = parse(record.value or b"")
            except InvalidAlert:
                report.unreadable += 1
                bar.update()
                continue
            spec = lanes_by_name.get(name)
            if spec is None:
                report.unknown_target += 1
                bar.update()
                continue
            key = Key.of(message, name)
            if dry_run:
                verdict = decide(key, await ledger.past(key), replay=True)
                report.outcomes[verdict.value if verdict is not Verdict.SEND else "send"] += 1
                bar.update()
                continue
            lane = lanes.setdefault(name, Lane(spec, shared, capacity=1 << 30))
            while lane.pending >= REPLAY_IN_FLIGHT:  # a long topic is not all in memory at once
                await asyncio.wait(list(lane.tasks), return_when=asyncio.FIRST_COMPLETED)
            lane.offer(Job(key, message, record.value or b"", lambda ended: bar.update(), time.monotonic()))
            if report.errors:
                break
        for lane in lanes.values():
            await lane.drain()
    finally:
        for lane in lanes.values():
            lane.cancel()
            await lane.drain()
        bar.close()
        await session.close()
        await producer.stop()
        await ledger.close()
    return report


def run(settings: Settings, target: str | None, dry_run: bool, progress: bool) -> Report:
    return asyncio.run(replay(settings, target, dry_run, progress))
