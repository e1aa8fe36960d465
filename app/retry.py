"""One retry helper for every outbound call: exponential backoff with jitter, to a deadline.

Logs only when the error changes (not every attempt), and wraps the last error with the count; an error is
shown as its type and redacted message (app.redact), never its repr: a connection error may carry a URL.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.errors import AlertHistoryError
from app.redact import describe

T = TypeVar("T")
log = logging.getLogger(__name__)


class RetriesExhausted(AlertHistoryError):
    def __init__(self, what: str, attempts: int, last: BaseException) -> None:
        super().__init__(f"{what}: gave up after {attempts} attempts: {describe(last)}")
        self.attempts = attempts
        self.last = last


async def retry(
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    retryable: Callable[[BaseException], bool],
    deadline_s: float = 30.0,
    first_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
    attempt_timeout_s: float | None = None,
) -> T:
    """Call until it succeeds, a non-retryable error is raised, or the deadline passes.

    With `attempt_timeout_s`, an attempt is cancelled after that long, or when the deadline comes: a
    peer that stops answering cannot hold the caller past its deadline (a timeout must be retryable)."""
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
            if time.monotonic() - start + delay > deadline_s:
                raise RetriesExhausted(what, attempts, exc) from exc
            error = describe(exc)
            if error != last_error:
                log.warning("%s failed, retrying: %s", what, error, extra={"attempt": attempts})
                last_error = error
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, max_delay_s)
