"""Measuring: progress polled until done, sustained rates, percentiles, timed HTTP requests."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
import asyncpg
from tqdm import tqdm

from app.bench.proc import CpuMeter, Proc, cpu_us_per


@dataclass(frozen=True)
class Sample:
    """Progress at one moment: how many were done, and the CPU seconds of the processes watched."""

    t: float
    n: int
    cpu: Mapping[str, float | None] = field(default_factory=dict)


def progress_bar(total: int, desc: str, unit: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=1)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def sustained(samples: list[Sample]) -> tuple[Sample, Sample]:
    """From the first progress to the last: start-up and recovery are not throughput."""
    first = next((i for i, s in enumerate(samples) if s.n > 0), 0)
    if first == len(samples) - 1:  # all of it between two samples: from the sample before
        first = max(first - 1, 0)
    return samples[first], samples[-1]


def sustained_rate(samples: list[Sample]) -> float:
    start, end = sustained(samples)
    return (end.n - start.n) / max(end.t - start.t, 1e-9)


def sustained_cpu_us(samples: list[Sample]) -> dict[str, float | None]:
    """CPU µs per item of each watched process, from the sample before the first progress to the last: the first
    batch is decided, and its rows written, before PostgreSQL shows it stored."""
    first = next((i for i, s in enumerate(samples) if s.n > 0), 0)
    start, end = samples[max(first - 1, 0)], samples[-1]
    return cpu_us_per(start.cpu, end.cpu, end.n - start.n)


async def poll(
    check: Callable[[], Awaitable[int]],
    total: int,
    desc: str,
    proc: Proc,
    timeout_s: float,
    cpu: CpuMeter | None = None,
) -> list[Sample]:
    """Sample progress (and the CPU time of `cpu`'s processes) until `total` is reached."""
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout_s
    with progress_bar(total, desc, "ev") as bar:
        while time.monotonic() < deadline:
            proc.check()
            n = await check()
            samples.append(Sample(time.monotonic(), n, cpu.read() if cpu else {}))
            bar.update(n - bar.n)
            if n >= total:
                return samples
            await asyncio.sleep(0.2)
    raise SystemExit(f"bench: {desc} did not finish in {timeout_s:.0f}s ({samples[-1].n} of {total})")


def stored(db: asyncpg.Pool, topic: str) -> Callable[[], Awaitable[int]]:
    """Messages of `topic` whose effect PostgreSQL holds (the sink's next offsets, summed)."""

    async def count() -> int:
        sql = "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets WHERE topic = $1"
        return int(await db.fetchval(sql, topic))

    return count


async def wait_drained(brokers: str, db: asyncpg.Pool, topic: str, worker: Proc, timeout_s: float = 600) -> None:
    """Until the worker has stored everything on the topic (the backlog a previous phase left)."""
    from app.topics import end_offsets

    total = sum((await end_offsets(brokers, topic)).values())
    await poll(stored(db, topic), total, "drain", worker, timeout_s)


async def poll_http(
    url: str, proc: Proc, timeout_s: float, every_s: float, done: Callable[[int, str], bool]
) -> str | None:
    """GET `url` until `done(status, body)`; that body, or None after `timeout_s` (the process must stay up)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            proc.check()
            try:
                async with session.get(url) as resp:
                    body = await resp.text()
                    if done(resp.status, body):
                        return body
            except aiohttp.ClientError:
                pass  # not listening yet
            await asyncio.sleep(every_s)
    return None


async def wait_ready(url: str, proc: Proc, timeout_s: float = 180) -> None:
    """Until the process's /readyz answers 200 (a worker: its partitions assigned, its table recovered)."""
    if await poll_http(f"{url}/readyz", proc, timeout_s, 0.5, lambda status, _: status == 200) is None:
        raise SystemExit(f"bench: {url}/readyz not ready after {timeout_s:.0f}s")


async def poll_metric(
    port: int, name: str, done: Callable[[float], bool], proc: Proc, timeout_s: float
) -> float | None:
    """Read one unlabelled metric from the worker's /metrics until `done(value)`; the last value read."""
    seen: list[float] = []

    def check(status: int, text: str) -> bool:
        for line in text.splitlines():
            if line.startswith(name + " "):
                seen.append(float(line.split()[1]))
                return done(seen[-1])
        return False

    if await poll_http(f"http://127.0.0.1:{port}/metrics", proc, timeout_s, 1.0, check) is None:
        print(f"bench: {name} still {seen[-1] if seen else None} after {timeout_s:.0f}s", file=sys.stderr)
    return seen[-1] if seen else None


@dataclass
class Reads:
    """What the readers got: each answered request's milliseconds, and how many failed (the first one's reason)."""

    ms: list[float] = field(default_factory=list)
    failure: str | None = None
    failures: int = 0

    def pct(self, q: float) -> float | None:
        """A percentile with each failed request counted as slower than any answer: None when it falls on one."""
        value = pct(self.ms + [_FAILED_MS] * self.failures, q)
        return None if value is None or value >= _FAILED_MS / 10 else value

    def note(self) -> str:
        total = len(self.ms) + self.failures
        return f"{self.failures} of {total} failed: {self.failure}" if self.failure else ""


_FAILED_MS = 1e12


async def concurrent_gets(
    url: str, params: list[dict[str, str]], readers: int, timeout_s: float = 30, give_up_after: int = 3
) -> Reads:
    """The GETs shared among `readers` concurrent clients: each answered one timed; a failure (non-200 or
    timeout) noted, and after `give_up_after` of them the rest not sent (a query that fails keeps failing)."""
    out = Reads()
    todo = iter(params)

    async def reader(session: aiohttp.ClientSession) -> None:
        for p in todo:
            if out.failures >= give_up_after:
                return
            t, reason = time.perf_counter(), ""
            try:
                async with session.get(url, params=p) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, reason = None, f"{type(exc).__name__} after {time.perf_counter() - t:.1f} s"
            if status == 200:
                out.ms.append((time.perf_counter() - t) * 1000)
                continue
            out.failures += 1
            out.failure = out.failure or (str(status) if status is not None else reason)

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=readers)) as session:
        await asyncio.gather(*(reader(session) for _ in range(readers)))
    return out
