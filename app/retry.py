"""One retry helper for every outbound call: exponential backoff with full jitter, to a deadline.

Logs only when the error changes (not every attempt), and wraps the last error with the count; an error is
shown as its type and redacted message (app.redact), never its repr: a connection error may carry a URL.
The HTTP rule lives here too, in one place: 2xx ok; 429, 5xx and timeouts retried (after `Retry-After` when a
429 or 503 gives one); any other status is fatal.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TypeVar

import aiohttp

from app.errors import AlertHistoryError
from app.redact import describe

T = TypeVar("T")
log = logging.getLogger(__name__)


class RetriesExhausted(AlertHistoryError):
    def __init__(self, what: str, attempts: int, last: BaseException) -> None:
        super().__init__(f"{what}: gave up after {attempts} attempts: {describe(last)}")
        self.attempts = attempts
        self.last = last


class StatusRule(StrEnum):
    OK = "ok"
    RETRY = "retry"
    FATAL = "fatal"


# Only these answers' Retry-After is honoured: on any other status it has no defined meaning.
RETRY_AFTER_STATUSES = frozenset({429, 503})


def status_rule(status: int) -> StatusRule:
    """What an HTTP status means for the call that got it."""
    if 200 <= status < 300:
        return StatusRule.OK
    if status == 429 or 500 <= status < 600:
        return StatusRule.RETRY
    return StatusRule.FATAL


class HTTPStatusError(AlertHistoryError):
    """A peer answered with a status other than 2xx; `retry_after_s` is its Retry-After, where honoured."""

    def __init__(self, status: int, detail: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(f"HTTP {status}" + (f": {detail}" if detail else ""))
        self.status = status
        self.retry_after_s = retry_after_s if status in RETRY_AFTER_STATUSES else None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retryable_http(exc: BaseException) -> bool:
    """The HTTP rule for errors: a retryable status, a timeout, or a connection that failed or was cut."""
    if isinstance(exc, HTTPStatusError):
        return status_rule(exc.status) is StatusRule.RETRY
    return isinstance(exc, TimeoutError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | OSError)


def backoff_s(delay_s: float, exc: BaseException) -> float:
    """How long to wait before the next attempt: full jitter over the current delay, and never less than what the
    peer's Retry-After asked for."""
    wait = random.uniform(0.0, delay_s)
    retry_after = getattr(exc, "retry_after_s", None)
    return max(wait, retry_after) if retry_after is not None else wait


async def retry(
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    retryable: Callable[[BaseException], bool],
    deadline_s: float = 30.0,
    first_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
    attempt_timeout_s: float | None = None,
    max_attempts: int | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """Call until it succeeds, a non-retryable error is raised, `max_attempts` were made or the deadline passes.

    With `attempt_timeout_s`, an attempt is cancelled after that long, or when the deadline comes: a
    peer that stops answering cannot hold the caller past its deadline (a timeout must be retryable).
    A wait the peer asks for (Retry-After) that would end past the deadline ends the retries at once.
    `on_retry(error, wait_s)` is told of each retry before its wait."""
    start = time.monotonic()
    delay = first_delay_s
    attempts = 0
    last_error: str | None = None  # described, to log only when it changes
    while True:
        attempts += 1
        try:
            if attempt_timeout_s is None:
                return await call()
            left = max(0.001, deadline_s - (time.monotonic() - start))
            return await asyncio.wait_for(call(), min(attempt_timeout_s, left))
        except Exception as exc:
            if not retryable(exc):
                raise
            wait = backoff_s(delay, exc)
            if time.monotonic() - start + wait > deadline_s or (max_attempts is not None and attempts >= max_attempts):
                raise RetriesExhausted(what, attempts, exc) from exc
            error = describe(exc)
            if error != last_error:
                log.warning("%s failed, retrying: %s", what, error, extra={"attempt": attempts})
                last_error = error
            if on_retry is not None:
                on_retry(exc, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, max_delay_s)
