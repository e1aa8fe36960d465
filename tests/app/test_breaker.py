"""app.breaker: opens after N consecutive failures, one probe after the cool-down, closes on a success."""

from __future__ import annotations

import pytest

from app.breaker import BreakerOpen, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_probes_after_the_cooldown_and_closes() -> None:
    clock, seen = Clock(), []
    b = CircuitBreaker("t", failures=3, cooldown_s=10, clock=clock, on_change=seen.append)
    for _ in range(2):
        b.before_call()
        b.failed()
    b.before_call()
    b.succeeded()  # a success in between: the count starts again
    for _ in range(3):
        b.before_call()
        b.failed()
    assert b.state is BreakerState.OPEN and seen == [BreakerState.OPEN]
    clock.now = 9.9
    with pytest.raises(BreakerOpen, match="open after 3 consecutive failures; the next probe goes in 0 s"):
        b.before_call()
    clock.now = 10.0
    b.before_call()  # the probe
    assert b.state is BreakerState.HALF_OPEN
    with pytest.raises(BreakerOpen, match="probe is in flight"):
        b.before_call()  # one probe at a time
    b.failed()  # the probe failed: open again, for another cool-down
    assert b.state is BreakerState.OPEN and b.opened_at == 10.0
    clock.now = 20.0
    b.before_call()
    b.succeeded()
    assert b.state is BreakerState.CLOSED
    assert seen == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN, BreakerState.HALF_OPEN,
                    BreakerState.CLOSED]  # fmt: skip


def test_an_abandoned_probe_frees_its_slot() -> None:
    clock = Clock()
    b = CircuitBreaker("t", failures=1, cooldown_s=1, clock=clock)
    b.failed()
    clock.now = 1
    b.before_call()
    b.abandoned()
    b.before_call()  # another probe may go
    assert b.state is BreakerState.HALF_OPEN
