"""Settings, loaded once from `ALERT_HISTORY_*` variables and passed explicitly to the app factory."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import ConfigError

ENV_PREFIX = "ALERT_HISTORY_"


class EnrichmentMode(StrEnum):
    TRANSPARENT = "transparent"
    ENRICHED = "enriched"
    TRANSPARENT_WITH_RECOMMENDATIONS = "transparent_with_recommendations"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    kafka_brokers: str | None = None  # unset -> embedded broker (dev/test only)
    database_url: str | None = None  # unset -> embedded PostgreSQL (dev/test only)
    redis_url: str | None = None
    topic: str = Field("alerts", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(8, ge=1, le=1024)
    web_port: int = Field(6066, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    dedup_window: int = Field(86400, ge=1, description="seconds")
    flap_window: int = Field(1800, ge=1, description="seconds")
    flap_threshold: int = Field(4, ge=2)
    retention_days: int = Field(30, ge=1)
    api_token: str | None = None
    llm_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str | None = None
    # Not in the contract's list, but needed to run several isolated pipelines on one cluster.
    app_id: str = Field("alert-history", pattern=r"^[A-Za-z0-9._-]+$")
    data_dir: str = "var"  # Faust's RocksDB table state lives here
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field("json", pattern=r"^(json|text)$")
    web_enabled: bool = True
    # False: a web node (the bridge and the reads) that takes no partitions, so web nodes scale on their own and
    # starting or stopping one never rebalances the pipeline's workers.
    pipeline_enabled: bool = True
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    query_timeout: float = Field(10.0, gt=0, le=600, description="seconds: statement timeout of every read query")
    # The bridge's back-pressure (app/produce.py): how long a request waits for Kafka's acknowledgement before
    # it is answered 503, and how many requests may wait at once (more are answered 503 at once, not queued).
    produce_timeout: float = Field(5.0, gt=0, le=300, description="seconds")
    produce_max_waiting: int = Field(256, ge=1)

    @field_validator("kafka_brokers", "database_url", "redis_url", "api_token", "llm_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}-dlq"

    @property
    def broker_url(self) -> str:
        """Faust's form of the broker list: kafka://h1:p1;h2:p2."""
        if not self.kafka_brokers:
            raise ConfigError(f"{ENV_PREFIX}KAFKA_BROKERS is not set")
        return ";".join(f"kafka://{b.strip()}" for b in self.kafka_brokers.split(",") if b.strip())


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ENV_PREFIX + str(err["loc"][0]).upper() if err["loc"] else ENV_PREFIX
        raise ConfigError(f"{name}: {err['msg']} (got {err.get('input')!r})") from None
