"""A steady webhook load of distinct alerts from concurrent clients, and the exactly-once check of what it sent.

Every alert of a load is new (its own `seq` label under the load's `fault_run`), so PostgreSQL must hold exactly one
row for each. A client resends a batch until it is answered 2xx, as Alertmanager does: after a 503 (waiting what
`Retry-After` says), another 5xx, a timeout or a refused connection. Each resend of an alert the broker did take is
a duplicate, so the row's `duplicates` may grow by at most the number of resends, never by more.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson

from app.fingerprint import fingerprint
from tests.fixtures import eventually, unique

STARTS_AT = "2026-11-24T10:00:00Z"
LINES: list[str] = []  # each scenario's line, shown again at the end of the session (tests/faults/conftest.py)


@dataclass
class Tally:
    """One alert as its client knows it."""

    sends: int = 0  # posts of its batch
    accepted: bool = False  # one of them was answered 2xx


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    retry_after: str | None


class WebhookLoad:
    """`clients` concurrent senders, each posting a batch of `batch` new alerts every `pause_s` (real HTTP)."""

    def __init__(
        self, url: str, *, clients: int = 4, batch: int = 10, pause_s: float = 0.1, timeout_s: float = 30.0
    ) -> None:
        self.url = f"{url}/webhook"
        self.run = unique("F")
        self.clients, self.batch, self.pause_s, self.timeout_s = clients, batch, pause_s, timeout_s
        self.alerts: list[Tally] = []
        self.answers: list[Answer] = []
        self.errors: Counter[str] = Counter()  # no answer: exception type → count
        self._stopping = asyncio.Event()
        self._give_up_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebhookLoad:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(give_up_s=0 if exc[0] is not None else 180)

    async def stop(self, give_up_s: float = 180) -> None:
        """No new batch; each batch under way is resent until answered 2xx, for at most `give_up_s`."""
        if self._session is None:
            return
        self._stopping.set()
        self._give_up_at = time.monotonic() + give_up_s
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self._session.close()
            self._session = None

    @property
    def accepted(self) -> int:
        return sum(t.accepted for t in self.alerts)

    async def wait_accepted(self, more: int, timeout: float = 60) -> None:
        """Until `more` alerts beyond those accepted now are: the load is flowing."""
        target = self.accepted + more

        async def reached() -> bool:
            self._raise_if_crashed()
            return self.accepted >= target

        await eventually(reached, timeout=timeout, what=f"{target} alerts accepted ({self.summary()})")

    def statuses(self, since: int = 0) -> Counter[int]:
        return Counter(a.status for a in self.answers[since:])

    def summary(self) -> str:
        return (
            f"{len(self.alerts)} sent, {self.accepted} accepted, answers {dict(self.statuses())}, {dict(self.errors)}"
        )

    def _raise_if_crashed(self) -> None:
        for task in self._tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _client(self) -> None:
        while not self._stopping.is_set():
            seqs = list(range(len(self.alerts), len(self.alerts) + self.batch))
            self.alerts.extend(Tally() for _ in seqs)
            await self._deliver(seqs)
            await asyncio.sleep(self.pause_s)

    async def _deliver(self, seqs: list[int]) -> None:
        body = orjson.dumps(webhook([self.alert(seq) for seq in seqs]))
        while True:
            for seq in seqs:
                self.alerts[seq].sends += 1
            wait = await self._post(body)
            if wait is None:
                for seq in seqs:
                    self.alerts[seq].accepted = True
                return
            if self._give_up_at is not None and time.monotonic() + wait > self._give_up_at:
                return
            await asyncio.sleep(wait)

    async def _post(self, body: bytes) -> float | None:
        """None once accepted; else how long to wait before the resend."""
        assert self._session is not None
        began = time.monotonic()
        try:
            async with self._session.post(self.url, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                answer = Answer(resp.status, time.monotonic() - began, resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.errors[type(exc).__name__] += 1
            return 0.5
        self.answers.append(answer)
        if 200 <= answer.status < 300:
            return None
        if answer.status == 503 and answer.retry_after and answer.retry_after.isdigit():
            return min(float(answer.retry_after), 5.0)
        return 1.0

    def alert(self, seq: int) -> dict[str, Any]:
        labels = {"alertname": "FaultLoad", "fault_run": self.run, "seq": str(seq)}
        return {
            "status": "firing",
            "labels": labels,
            "annotations": {"summary": f"fault load alert {seq}"},
            "startsAt": STARTS_AT,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": fingerprint(labels),
        }


def webhook(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="FaultLoad"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "faults",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


@dataclass(frozen=True)
class Verdict:
    """What a load left in PostgreSQL, against what its clients were told."""

    scenario: str
    sent: int
    accepted: int  # alerts answered 2xx
    stored: int  # alerts with a row
    lost: list[int]  # answered 2xx, no row
    duplicated: list[int]  # two rows, or more duplicates counted than the alert was resent
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    resends: int = 0
    slowest_s: float = 0.0  # the slowest answer

    @property
    def five_xx(self) -> int:
        """Server errors: every 5xx but the 503 with Retry-After that asks a sender to resend (back-pressure)."""
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)

    def line(self) -> str:
        return (
            f"faults {self.scenario}: sent {self.sent}, 2xx {self.accepted}, stored {self.stored}, "
            f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, 5xx {self.five_xx}, "
            f"503 with Retry-After {self.statuses.get(503, 0)} "
            f"(answers {dict(sorted(self.statuses.items()))}, slowest {self.slowest_s:.1f} s; "
            f"no answer {dict(self.errors)}; resends {self.resends})"
        )

    def assert_exactly_once(self) -> None:
        print(self.line())
        LINES.append(self.line())
        assert not self.lost, f"{self.line()}: alerts answered 2xx but not stored, seq {self.lost[:20]}"
        assert not self.duplicated, f"{self.line()}: alerts stored twice or over-counted, seq {self.duplicated[:20]}"
        assert self.accepted == self.sent, f"{self.line()}: some batches were never answered 2xx"


async def verify(db: asyncpg.Pool, load: WebhookLoad, scenario: str) -> Verdict:
    """Read the load's rows back: each alert's row count and duplicates against its sends."""
    rows = await db.fetch(
        "SELECT (labels->>'seq')::int AS seq, count(*) AS rows, sum(duplicates) AS duplicates "
        "FROM alert_events WHERE labels @> $1::jsonb GROUP BY 1",
        orjson.dumps({"fault_run": load.run}).decode(),
    )
    held = {r["seq"]: (r["rows"], r["duplicates"]) for r in rows}
    lost = [seq for seq, t in enumerate(load.alerts) if t.accepted and seq not in held]
    duplicated = [seq for seq, (n, dups) in sorted(held.items()) if n > 1 or dups > load.alerts[seq].sends - 1]
    return Verdict(
        scenario,
        sent=len(load.alerts),
        accepted=load.accepted,
        stored=len(held),
        lost=lost,
        duplicated=duplicated,
        statuses=load.statuses(),
        errors=load.errors,
        resends=sum(t.sends for t in load.alerts) - len(load.alerts),
        slowest_s=max((a.seconds for a in load.answers), default=0.0),
    )
