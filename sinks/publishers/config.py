"""What every target of the rules file may set about its deliveries (the `delivery:` mapping of a target): the
publish branch's additions to the target model, all in this one class."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(10.0, gt=0, le=300, description="one attempt, connect to last byte")
    deadline_s: float = Field(60.0, gt=0, le=3600, description="all attempts of one delivery, waits included")
    max_attempts: int = Field(5, ge=1, le=100)
    first_delay_s: float = Field(0.5, gt=0, description="backoff before the second attempt (full jitter below it)")
    max_delay_s: float = Field(30.0, gt=0, description="backoff cap")
    breaker_failures: int = Field(5, ge=1, description="consecutive failed attempts that open the circuit breaker")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="open this long before one probe goes through")
    concurrency: int = Field(4, ge=1, le=256, description="requests in flight to the target at once")
    queue: int = Field(1000, ge=1, le=1_000_000, description="deliveries waiting for the target; beyond: the DLQ")
