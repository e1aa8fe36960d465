"""app.retry: retries what is retryable, to a deadline that a peer which stops answering cannot stretch."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import aiohttp
import pytest

from app.retry import (
    HTTPStatusError,
    RetriesExhausted,
    StatusRule,
    backoff_s,
    parse_retry_after,
    retry,
    retryable_http,
    status_rule,
)


async def test_retries_until_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("refused")
        return "ok"

    assert await retry("flaky", flaky, retryable=lambda e: True, first_delay_s=0.001) == "ok"
    assert calls == 3


async def test_a_fatal_error_is_raised_at_once() -> None:
    calls = 0

    async def fatal() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        await retry("fatal", fatal, retryable=lambda e: not isinstance(e, ValueError))
    assert calls == 1


async def test_an_attempt_that_never_answers_is_cut_at_the_deadline() -> None:
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(3600)

    with pytest.raises(RetriesExhausted) as err:
        await retry(
            "hangs", hangs, retryable=lambda e: isinstance(e, TimeoutError), deadline_s=0.5, attempt_timeout_s=0.1,
            first_delay_s=0.01,
        )  # fmt: skip
    assert err.value.attempts == calls > 1
    assert isinstance(err.value.last, TimeoutError)


@pytest.mark.parametrize(
    ("status", "rule"),
    [(200, StatusRule.OK), (202, StatusRule.OK), (204, StatusRule.OK), (301, StatusRule.FATAL),
     (400, StatusRule.FATAL), (401, StatusRule.FATAL), (404, StatusRule.FATAL), (429, StatusRule.RETRY),
     (500, StatusRule.RETRY), (502, StatusRule.RETRY), (503, StatusRule.RETRY)],
)  # fmt: skip
def test_the_status_rule(status: int, rule: StatusRule) -> None:
    assert status_rule(status) is rule
    assert retryable_http(HTTPStatusError(status)) is (rule is StatusRule.RETRY)


def test_timeouts_and_cut_connections_are_retried_other_errors_are_not() -> None:
    assert retryable_http(TimeoutError()) and retryable_http(ConnectionRefusedError())
    assert retryable_http(aiohttp.ServerDisconnectedError())
    assert not retryable_http(ValueError("bad body"))


def test_retry_after_is_read_as_seconds_or_a_date_and_kept_only_for_429_and_503() -> None:
    now = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Tue, 24 Nov 2026 10:00:30 GMT", now) == 30.0
    assert parse_retry_after("Tue, 24 Nov 2026 09:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert HTTPStatusError(429, retry_after_s=3).retry_after_s == 3
    assert HTTPStatusError(503, retry_after_s=3).retry_after_s == 3
    assert HTTPStatusError(500, retry_after_s=3).retry_after_s is None


def test_full_jitter_waits_anywhere_below_the_delay_and_never_below_retry_after() -> None:
    random.seed(5)
    waits = [backoff_s(2.0, ConnectionError()) for _ in range(2000)]
    assert 0 <= min(waits) < 0.05 and 1.95 < max(waits) <= 2.0  # the whole range, down to nothing
    assert min(backoff_s(2.0, HTTPStatusError(429, retry_after_s=3)) for _ in range(100)) >= 3


async def test_max_attempts_and_a_retry_after_past_the_deadline_end_the_retries() -> None:
    calls, retried = 0, []

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise HTTPStatusError(500)

    with pytest.raises(RetriesExhausted) as err:
        await retry("t", refused, retryable=retryable_http, first_delay_s=0.001, max_attempts=3,
                    on_retry=lambda e, w: retried.append(w))  # fmt: skip
    assert calls == err.value.attempts == 3 and len(retried) == 2

    async def paced() -> None:
        raise HTTPStatusError(429, retry_after_s=60)

    with pytest.raises(RetriesExhausted) as err:
        await retry("t", paced, retryable=retryable_http, deadline_s=5)
    assert err.value.attempts == 1  # waiting 60 s would pass the 5 s deadline: no point
