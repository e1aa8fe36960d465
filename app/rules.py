"""The rules file (`ALERT_HISTORY_RULES_FILE`, YAML): classification rules, filter rules and publish targets.

The one module that reads and validates it (DESIGN.md shows the schema). Every error names the file and the line
of what is wrong: the YAML is composed into nodes first, which keep their marks, and a pydantic error's location
is looked up among them. Secrets are never in the file, only the names of the variables that hold them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from app.errors import ConfigError
from app.matchers import Matcher, MatcherError, parse_matchers

MAX_FILE_BYTES = 1024 * 1024
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# The vocabulary of the file, shared with the agents that act on it.
Severity = Literal["critical", "warning", "info", "noise"]  # a classification's severity


class Action(StrEnum):
    """What a filter rule does with the events it matches."""

    ALLOW = "allow"
    DENY = "deny"
    DELAY = "delay"


class Delivery(BaseModel):
    """What a target may set about its deliveries (its `delivery:` mapping): timeouts, retries, breaker, queue."""

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


class RulesError(ConfigError):
    """The rules file cannot be used; the message names the file, the line and what is wrong."""


def duration_s(value: object) -> float:
    """`5m`, `1h30m`, `90s` (Prometheus' units h, m, s) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 5m or 1h30m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.fullmatch(str(value).strip())
        if not m or not any(m.groups()):
            raise ValueError(f"must be a duration such as 30s, 5m or 1h30m, got {value!r}")
        hours, minutes, secs = (int(g or 0) for g in m.groups())
        seconds = float(hours * 3600 + minutes * 60 + secs)
    if seconds <= 0:
        raise ValueError("must be longer than 0 s")
    return seconds


def _matchers(values: Sequence[str]) -> list[Matcher]:
    out: list[Matcher] = []
    for i, text in enumerate(values):
        try:
            out += parse_matchers(text)
        except MatcherError as exc:
            raise ValueError(f"[{i}]: {exc}") from None
    return out


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    match: list[str] = Field(default_factory=list, description="Alertmanager matchers, all must match")
    _matchers: list[Matcher] = PrivateAttr(default_factory=list)  # compiled once: rules are matched per event

    def model_post_init(self, context: Any) -> None:
        self._matchers = _matchers(self.match)

    @field_validator("match", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("match")
    @classmethod
    def _parses(cls, value: list[str]) -> list[str]:
        _matchers(value)
        return value

    @property
    def matchers(self) -> list[Matcher]:
        return self._matchers

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self._matchers)


class ClassificationRule(_Rule):
    """Matching alerts get this severity and/or category without any LLM call."""

    severity: Severity | None = None
    category: str | None = Field(None, min_length=1, max_length=64)
    recommendations: list[str] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _decides_something(self) -> ClassificationRule:
        if self.severity is None and self.category is None:
            raise ValueError("a classification rule needs severity, category or both")
        return self


class FilterRule(_Rule):
    """Whether matching events are published: allow, deny, or delay (published only if still firing after `for`)."""

    name: str = Field(min_length=1, max_length=200)
    action: Action
    for_s: float | None = Field(None, alias="for")

    @field_validator("for_s", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return None if value is None else duration_s(value)

    @model_validator(mode="after")
    def _delay_needs_for(self) -> FilterRule:
        if self.action is Action.DELAY and self.for_s is None:
            raise ValueError("action delay needs `for` (e.g. for: 5m)")
        if self.action is not Action.DELAY and self.for_s is not None:
            raise ValueError(f"`for` applies to action delay only, not {self.action.value}")
        return self


class Target(_Rule):
    """Where the publish agent delivers matching events (sinks/publishers builds the sender of each)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    type: Literal["slack", "pagerduty", "webhook"]
    url: str | None = None
    url_env: str | None = Field(None, pattern=_ENV_NAME.pattern)
    routing_key_env: str | None = Field(None, pattern=_ENV_NAME.pattern)
    delivery: Delivery = Delivery()  # frozen: one shared default is safe

    @model_validator(mode="after")
    def _where(self) -> Target:
        if self.url is not None and self.url_env is not None:
            raise ValueError("give url or url_env, not both")
        if self.type == "pagerduty":
            if self.routing_key_env is None:
                raise ValueError("a pagerduty target needs routing_key_env (the variable holding the routing key)")
        elif self.url is None and self.url_env is None:
            raise ValueError(f"a {self.type} target needs url or url_env")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    classification: list[ClassificationRule] = Field(default_factory=list)
    filters: list[FilterRule] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)

    @field_validator("classification", "filters", "targets", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    @field_validator("filters", "targets")
    @classmethod
    def _unique_names(cls, value: list[FilterRule] | list[Target]) -> list[FilterRule] | list[Target]:
        names = [item.name for item in value]
        twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if twice is not None:
            raise ValueError(f"names must be unique, {twice!r} is used twice")
        return value

    def summary(self) -> str:
        delays = sum(f.action is Action.DELAY for f in self.filters)
        return (
            f"{len(self.classification)} classification rules, {len(self.filters)} filters ({delays} delaying), "
            f"{len(self.targets)} targets"
        )


EMPTY = Rules()


def parse(text: str, origin: str = "<rules>") -> Rules:
    """The rules of a YAML document; RulesError naming `origin`, the line and what is wrong."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        raise RulesError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"{origin}: not valid YAML: {exc}") from None
    if data is None:
        return EMPTY
    if not isinstance(data, dict):
        raise RulesError(f"{origin}:1: must be a mapping with classification, filters and targets")
    lines: dict[tuple[Any, ...], int] = {}
    _mark_lines(node, (), lines)
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        line = _line_of(loc, lines)
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        raise RulesError(f"{origin}:{line}: {path}: {message}") from None


def load(path: str | Path) -> Rules:
    """The rules of the file at `path`; RulesError when it cannot be read or is not valid."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise RulesError(f"{p}: cannot read the rules file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise RulesError(f"{p}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise RulesError(f"{p}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return parse(text, str(p))


def _mark_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            _mark_lines(value, (*path, name), lines)
            lines[(*path, name)] = key.start_mark.line + 1  # the key's line: where the reader looks
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _mark_lines(item, (*path, i), lines)


def _line_of(loc: tuple[Any, ...], lines: Mapping[tuple[Any, ...], int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1
