"""One circuit breaker for every outbound target: it opens after `failures` consecutive failures, lets one probe
through after `cooldown_s`, and closes again on a success.

The clock is injected, so the transitions are a plain table in the tests; `on_change` tells the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum

from app.errors import AlertHistoryError


class BreakerState(IntEnum):
    """Values of the `alert_history_breaker_state` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class BreakerOpen(AlertHistoryError):
    """The target failed too often in a row; calls are refused until the cool-down lets a probe through."""


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failures: int,
        cooldown_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.on_change = on_change
        self.state = BreakerState.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = False  # a half-open probe is in flight

    def before_call(self) -> None:
        """Raise BreakerOpen unless a call may go now. In half-open, one probe at a time."""
        if self.state is BreakerState.OPEN:
            if self.clock() - self.opened_at < self.cooldown_s:
                raise BreakerOpen(self._open_reason())
            self._become(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self.probing:
                raise BreakerOpen(f"circuit breaker of {self.name} is half-open and its probe is in flight")
            self.probing = True

    def succeeded(self) -> None:
        """The target answered: a 2xx, or a refusal of the request itself (4xx) that says it is up."""
        self.consecutive = 0
        self.probing = False
        if self.state is not BreakerState.CLOSED:
            self._become(BreakerState.CLOSED)

    def failed(self) -> None:
        """The target was unreachable, timed out or answered 5xx."""
        self.consecutive += 1
        self.probing = False
        if self.state is BreakerState.HALF_OPEN or self.consecutive >= self.threshold:
            self.opened_at = self.clock()
            self._become(BreakerState.OPEN)

    def abandoned(self) -> None:
        """A call ended without an answer either way (cancelled): its probe slot is free again."""
        self.probing = False

    def _open_reason(self) -> str:
        left = max(0.0, self.cooldown_s - (self.clock() - self.opened_at))
        return (
            f"circuit breaker of {self.name} is open after {self.consecutive} consecutive failures; "
            f"the next probe goes in {left:.0f} s"
        )

    def _become(self, state: BreakerState) -> None:
        self.state = state
        if self.on_change is not None:
            self.on_change(state)
