"""app.retry: retries what is retryable, to a deadline that a peer which stops answering cannot stretch."""

from __future__ import annotations

import asyncio

import pytest

from app.retry import RetriesExhausted, retry


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
