"""Settings, loaded once from `ALERT_HISTORY_*` variables and passed explicitly to the app factory."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import ConfigError
from app.redact import redact, remember_settings

ENV_PREFIX = "ALERT_HISTORY_"


class EnrichmentMode(StrEnum):
    TRANSPARENT = "transparent"
    ENRICHED = "enriched"
    TRANSPARENT_WITH_RECOMMENDATIONS = "transparent_with_recommendations"


MIN_TOKEN_LENGTH = 16
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_OPTIONAL = ("kafka_brokers", "database_url", "redis_url", "api_token", "read_token", "webhook_secret", "llm_api_key",
             "llm_url")  # fmt: skip
_SECRET_FIELDS = frozenset({"api_token", "read_token", "webhook_secret", "llm_api_key"})


def _check_url(value: str, schemes: tuple[str, ...], example: str) -> None:
    """Scheme and port parse; the messages never include the URL (it may carry a password)."""
    try:
        parts = urlsplit(value)
        if "," not in parts.netloc:  # libpq's multi-host form (h1:5432,h2:5432) is left to the driver
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        raise ValueError(f"is not a valid URL (expected {example})") from None
    if parts.scheme not in schemes:
        raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)} (expected {example})")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    kafka_brokers: str | None = None  # unset -> embedded broker (dev/test only)
    # URLs may carry a password: kept out of repr(), and every error that shows one goes through app.redact.
    database_url: str | None = Field(None, repr=False)  # unset -> embedded PostgreSQL (dev/test only)
    redis_url: str | None = Field(None, repr=False)
    topic: str = Field("alerts", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(8, ge=1, le=1024)
    web_port: int = Field(6066, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    dedup_window: int = Field(86400, ge=1, description="seconds")
    flap_window: int = Field(1800, ge=1, description="seconds")
    flap_threshold: int = Field(4, ge=2)
    retention_days: int = Field(30, ge=1)
    # Secrets (web/auth.py decides who passes): unset API_TOKEN -> writes open, unset READ_TOKEN -> reads open.
    api_token: SecretStr | None = None
    read_token: SecretStr | None = None
    webhook_secret: SecretStr | None = None  # HMAC-SHA256 key of X-Alert-History-Signature on POST /webhook
    llm_api_key: SecretStr | None = None
    llm_url: str | None = Field(None, repr=False)
    llm_model: str | None = Field(None, validate_default=True)
    # Not in the contract's list, but needed to run several isolated pipelines on one cluster.
    app_id: str = Field("alert-history", pattern=r"^[A-Za-z0-9._-]+$")
    data_dir: str = "var"  # Faust's RocksDB table state lives here
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field("json", pattern=r"^(json|text)$")
    web_enabled: bool = True
    # False: a web node (the bridge and the reads) that takes no partitions, so web nodes scale on their own and
    # starting or stopping one never rebalances the pipeline's workers.
    pipeline_enabled: bool = True
    # False: no events topic (enrich, publish and /events then see nothing); for a history-only deployment.
    events_enabled: bool = True
    # The pipeline's agents this worker runs. All by default; `history` in some workers and `enrich,publish` in
    # others (another APP_ID: every member of a consumer group must read the same topics) keeps the downstream
    # agents' CPU, and a slow LLM or target, off the cores of the history path.
    agents: str = Field("history,enrich,publish", pattern=r"^(history|enrich|publish)(,(history|enrich|publish))*$")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    query_timeout: float = Field(10.0, gt=0, le=600, description="seconds: statement timeout of every read query")
    # The bridge's back-pressure (app/produce.py): how long a request waits for Kafka's acknowledgement before
    # it is answered 503, and how many requests may wait at once (more are answered 503 at once, not queued).
    produce_timeout: float = Field(5.0, gt=0, le=300, description="seconds")
    produce_max_waiting: int = Field(256, ge=1)

    @field_validator(*_OPTIONAL, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value, ("postgres", "postgresql"), "postgresql://user:password@host:5432/db")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("unix://"):
            _check_url(value, ("redis", "rediss"), "redis://host:6379/0")
        return value

    @field_validator("api_token", "read_token", "webhook_secret")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        """A header-safe value long enough not to be guessed; the message never shows it."""
        if value is None:
            return None
        secret = value.get_secret_value()
        if not _TOKEN_CHARS.fullmatch(secret):
            raise ValueError("must be printable ASCII without spaces (e.g. the output of `openssl rand -hex 32`)")
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`)")
        return value

    @property
    def agent_names(self) -> frozenset[str]:
        return frozenset(self.agents.split(","))

    @property
    def dlq_topic(self) -> str:
        """Messages of the topic that are not alerts, with the reason in a header."""
        return f"{self.topic}-dlq"

    @property
    def events_topic(self) -> str:
        """One message per new stored event (the deduplicated stream): the enrich agent's and /events' input."""
        return f"{self.topic}-events"

    @property
    def notify_topic(self) -> str:
        """Events the filter rules let through, shaped by the enrichment mode: the publish agent's input."""
        return f"{self.topic}-notify"

    @property
    def notify_dlq_topic(self) -> str:
        """Deliveries that failed every retry, with target, reason and attempts in headers."""
        return f"{self.topic}-notify-dlq"

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic of the pipeline, created at start with the same partition count (a fingerprint's events are
        on the same partition number in each)."""
        return (self.topic, self.dlq_topic, self.events_topic, self.notify_topic, self.notify_dlq_topic)

    @property
    def broker_url(self) -> str:
        """Faust's form of the broker list: kafka://h1:p1;h2:p2."""
        if not self.kafka_brokers:
            raise ConfigError(f"{ENV_PREFIX}KAFKA_BROKERS is not set")
        return ";".join(f"kafka://{b.strip()}" for b in self.kafka_brokers.split(",") if b.strip())

    # Reads (web/): limits that keep a hostile or runaway reader from holding a node's connections.
    ndjson_streams: int = Field(4, ge=1, le=1000, description="concurrent /history?format=ndjson streams per node")
    ndjson_max_seconds: float = Field(300.0, gt=0, description="seconds: a longer stream ends with an error line")
    ndjson_write_timeout: float = Field(30.0, gt=0, description="seconds: a client that reads nothing this long")

    @property
    def read_client_timeout(self) -> float:
        """Seconds a read statement may go unanswered before the client gives up: 2 s past the statement timeout,
        so PostgreSQL's own cancel comes first whenever PostgreSQL is answering at all."""
        return self.query_timeout + 2.0

    # --- enrich ---
    # Classification rules, filter rules and publish targets (app/rules.py); unset: built-in rules, allow all.
    rules_file: str | None = None
    # Without Redis, each process's own; with Redis, the mode until PUT /enrichment/mode sets the shared one.
    enrichment_mode: EnrichmentMode = EnrichmentMode.ENRICHED
    llm_timeout: float = Field(10.0, gt=0, le=300, description="seconds: one classification, waiting for a slot too")
    llm_concurrency: int = Field(4, ge=1, le=256, description="LLM requests in flight per worker")
    llm_rate: float = Field(5.0, gt=0, le=10_000, description="LLM requests per second per worker, at most")
    enrich_cache_ttl: int = Field(7 * 86400, ge=1, description="seconds a cached LLM classification is reused")
    enrich_cache_max_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024, description="largest value cached")

    @field_validator("rules_file", mode="before")
    @classmethod
    def _no_rules_file(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("llm_url")
    @classmethod
    def _llm_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value, ("http", "https"), "http://127.0.0.1:8000/v1, where /chat/completions answers")
        return value

    @field_validator("llm_model")
    @classmethod
    def _llm_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("llm_url"):
            raise ValueError(f"must be set when {ENV_PREFIX}LLM_URL is (the model name the endpoint serves)")
        return value

    # --- publish ---
    # Where people reach this service: links back to an alert's timeline in what targets receive; unset -> no link.
    public_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")

    @field_validator("public_url", mode="before")
    @classmethod
    def _publish_empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # --- ui: the live stream (/events) and the dashboard ---
    events_streams: int = Field(100, ge=1, le=10_000, description="concurrent /events streams per node")
    events_heartbeat: float = Field(15.0, gt=0, le=300, description="seconds between heartbeat comments")
    events_client_buffer: int = Field(
        1024 * 1024, ge=4096, description="bytes of events queued for one /events client before it is dropped"
    )
    events_write_timeout: float = Field(30.0, gt=0, description="seconds: an /events client that reads nothing")


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, and have app.redact mask their secrets from then on. A bad value
    raises ConfigError naming the variable, showing the value only when it is no secret (redacted even then:
    a URL may carry a password)."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_context=False, include_input=True)[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        name = ENV_PREFIX + field.upper()
        message = err["msg"].removeprefix("Value error, ")
        if field in _SECRET_FIELDS or "input" not in err:
            raise ConfigError(f"{name}: {message}") from None
        raise ConfigError(f"{name}: {message} (got {redact(repr(err['input']))})") from None
    remember_settings(settings)
    return settings
