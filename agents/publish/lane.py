"""One target's deliveries (a lane): bounded, `concurrency` requests at a time, and per fingerprint one at a time in
the order they came, so a resolve never overtakes its firing. A lane never waits on another: a slow or dead target
fills or dead-letters its own lane only.

A delivery's turn: the ledger's past → decide (pure) → send with retries and the circuit breaker → record the
outcome, after putting the message on the dead-letter topic when it could not be delivered. The same lanes serve
the agent and `alert-history dlq replay`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from agents.publish.decider import Key, Outcome, Verdict, decide
from agents.publish.ledger import Ledger
from app import metrics
from app.breaker import BreakerOpen, CircuitBreaker
from app.produce import OutMessage
from app.redact import describe, redact
from app.retry import HTTPStatusError, RetriesExhausted, retry, retryable_http
from sinks.publishers.base import Target, send
from sinks.publishers.message import NotifyMessage

log = logging.getLogger(__name__)

TARGET_HEADER = "alert-history-target"
ERROR_HEADER = "alert-history-error"
ATTEMPTS_HEADER = "alert-history-attempts"
DEAD_LETTER_DEADLINE_S = 120.0

DeadLetters = Callable[[Sequence[OutMessage]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Job:
    """One delivery waiting in a lane; `done(ended)` once it has an outcome (True) or was abandoned (False)."""

    key: Key
    message: NotifyMessage
    raw: bytes  # the notify message as it was: what the dead-letter topic gets
    done: Callable[[bool], None]
    accepted: float  # time.monotonic() when the lane took it


@dataclass(frozen=True, slots=True)
class Shared:
    """What every lane of one process uses."""

    ledger: Ledger
    session: aiohttp.ClientSession
    dead_letters: DeadLetters
    dlq_topic: str
    # The ledger or Kafka failed past their deadlines, so what was sent is unknown: the agent exits 70 (a restart
    # resends only what has no recorded success); the replay stops with the error.
    on_fatal: Callable[[BaseException], None]
    replay: bool = False  # `dlq replay`: a recorded dead letter is sent again
    verdicts: dict[str, int] | None = None  # counts by verdict/outcome, for the replay's report


def dead_letter_message(
    topic: str, target: str, fingerprint: str | None, raw: bytes, reason: str, attempts: int
) -> OutMessage:
    headers = ((TARGET_HEADER, target.encode()), (ERROR_HEADER, redact(reason).encode()),
               (ATTEMPTS_HEADER, str(attempts).encode()))  # fmt: skip
    return OutMessage(topic, fingerprint.encode() if fingerprint else None, raw, headers=headers)


class Lane:
    def __init__(self, target: Target, shared: Shared, capacity: int | None = None) -> None:
        self.target = target
        self.name = target.name
        self.shared = shared
        self.capacity = capacity or target.delivery.queue
        self.slots = asyncio.Semaphore(target.delivery.concurrency)
        state = metrics.BREAKER_STATE.labels(self.name)
        state.set(0)
        self.breaker = CircuitBreaker(
            self.name, target.delivery.breaker_failures, target.delivery.breaker_cooldown_s, on_change=state.set
        )
        self.tails: dict[str, asyncio.Future[None]] = {}  # fingerprint → end of its last delivery taken
        self.tasks: set[asyncio.Task[None]] = set()
        self._pending = metrics.PENDING_DELIVERIES.labels(self.name)
        self._pending.set(0)

    @property
    def pending(self) -> int:
        return len(self.tasks)

    def offer(self, job: Job) -> bool:
        """Take the delivery, or False when the lane is full (the caller dead-letters it: never waits)."""
        if len(self.tasks) >= self.capacity:
            return False
        fingerprint = job.key.fingerprint
        previous = self.tails.get(fingerprint)
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tails[fingerprint] = ended
        task = asyncio.create_task(self._run(job, previous, ended), name=f"deliver-{self.name}")
        self.tasks.add(task)
        self._pending.set(len(self.tasks))
        return True

    async def overflow(self, job: Job) -> None:
        """The lane is full: the delivery goes to the dead-letter topic now (unless its success is recorded)."""
        past = await self.shared.ledger.past(job.key)
        if past.own is not Outcome.DELIVERED:
            reason = f"{self.name}'s queue is full ({self.capacity} deliveries waiting): the target is too slow"
            await self._dead_letter(job, reason, 0, "queue_full")
        job.done(True)

    def cancel(self) -> None:
        """Abandon every delivery not ended (a rebalance, a stop): their messages are left unacked."""
        for task in list(self.tasks):
            task.cancel()

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _run(self, job: Job, previous: asyncio.Future[None] | None, ended: asyncio.Future[None]) -> None:
        finished = False
        try:
            if previous is not None:
                await asyncio.shield(previous)
            async with self.slots:
                await self._turn(job)
            finished = True
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            self.shared.on_fatal(exc)
        finally:
            if not ended.done():
                ended.set_result(None)
            if self.tails.get(job.key.fingerprint) is ended:
                del self.tails[job.key.fingerprint]
            self.tasks.discard(asyncio.current_task())
            self._pending.set(len(self.tasks))
            job.done(finished)

    async def _turn(self, job: Job) -> None:
        key = job.key
        past = await self.shared.ledger.past(key)
        verdict = decide(key, past, replay=self.shared.replay)
        if verdict is Verdict.SEND:
            await self._send(job)
            return
        if verdict is Verdict.FOLLOWS_FIRING:
            reason = "its firing (same startsAt) is in the dead-letter topic: `dlq replay` delivers both, in order"
            await self._dead_letter(job, reason, 0, "follows_firing")
            return
        if verdict is Verdict.SUPERSEDED and past.own is not Outcome.SUPERSEDED:
            await self.shared.ledger.record(key, Outcome.SUPERSEDED, attempts=0, started=datetime.now(UTC))
        self._count(verdict.value)

    async def _send(self, job: Job) -> None:
        d = self.target.delivery
        request = self.target.request(job.message)
        started, deadline = datetime.now(UTC), time.monotonic() + d.deadline_s
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            self.breaker.before_call()
            attempts += 1
            try:
                async with asyncio.timeout(max(0.001, min(d.timeout_s, deadline - time.monotonic()))):
                    await send(self.shared.session, request, d.timeout_s)
            except asyncio.CancelledError:
                self.breaker.abandoned()
                raise
            except Exception as exc:
                # Up but refusing (4xx) or pacing us (429) is up: only unreachable, timed out or 5xx counts.
                down = retryable_http(exc) and not (isinstance(exc, HTTPStatusError) and exc.status == 429)
                self.breaker.failed() if down else self.breaker.succeeded()
                raise
            self.breaker.succeeded()

        retries = metrics.DELIVERY_RETRIES.labels(self.name)
        try:
            await retry(
                f"deliver {job.key.status} event {job.key.event_id} to {self.name}", attempt, retryable=retryable_http,
                deadline_s=d.deadline_s, first_delay_s=d.first_delay_s, max_delay_s=d.max_delay_s,
                max_attempts=d.max_attempts, on_retry=lambda exc, wait: retries.inc(),
            )  # fmt: skip
        except BreakerOpen as exc:
            await self._dead_letter(job, str(exc), attempts, "breaker_open")
        except RetriesExhausted as exc:
            await self._dead_letter(job, f"gave up after {exc.attempts} attempts: {describe(exc.last)}", attempts,
                                    "retries_exhausted")  # fmt: skip
        except Exception as exc:
            await self._dead_letter(job, f"refused: {describe(exc)}", attempts, "fatal")
        else:
            await self.shared.ledger.record(job.key, Outcome.DELIVERED, attempts=attempts, started=started)
            metrics.DELIVERY_SECONDS.labels(self.name).observe(time.monotonic() - job.accepted)
            self._count(Outcome.DELIVERED.value)

    async def _dead_letter(self, job: Job, reason: str, attempts: int, why: str) -> None:
        """On the dead-letter topic (acknowledged by Kafka), then recorded: a recorded dead letter is on the topic."""
        key = job.key
        reason = redact(reason)
        letter = dead_letter_message(self.shared.dlq_topic, self.name, key.fingerprint, job.raw, reason, attempts)
        await retry(
            "put a delivery on the dead-letter topic", lambda: self.shared.dead_letters([letter]),
            retryable=lambda e: True, deadline_s=DEAD_LETTER_DEADLINE_S,
        )  # fmt: skip
        await self.shared.ledger.record(
            key, Outcome.DEAD_LETTERED, attempts=attempts, started=datetime.now(UTC), error=reason
        )
        metrics.NOTIFY_DEAD_LETTERS.labels(self.name, why).inc()
        self._count(Outcome.DEAD_LETTERED.value)
        log.warning("%s event %s to %s dead-lettered: %s", key.status, key.event_id, self.name, reason,
                    extra={"target": self.name, "fingerprint": key.fingerprint, "attempts": attempts})  # fmt: skip

    def _count(self, outcome: str) -> None:
        metrics.DELIVERIES.labels(self.name, outcome).inc()
        if self.shared.verdicts is not None:
            self.shared.verdicts[outcome] = self.shared.verdicts.get(outcome, 0) + 1

