"""The rules file's `targets:`, read here until app/rules.py (the enrich branch's) reads the whole file: a thin
stand-in, swapped for `rules.targets` at merge. What it assumes of app/rules.py's target entries is `Entry`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import ConfigError
from app.matchers import Matcher, MatcherError, parse_matchers
from sinks.publishers import build
from sinks.publishers.base import Target
from sinks.publishers.config import Delivery


class Entry(BaseModel):
    """One target of the rules file (DESIGN.md): `delivery` is the publish branch's addition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    type: str
    url: str | None = None
    url_env: str | None = None
    routing_key_env: str | None = None
    match: list[str] = []
    delivery: Delivery = Delivery()


class _File(BaseModel):
    model_config = ConfigDict(extra="allow")  # classification:, filters: are the enrich branch's

    targets: list[Entry] = []


def read(path: str) -> list[tuple[Entry, list[Matcher]]]:
    """The targets of the file with their parsed matchers; ConfigError naming the file and what is wrong."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"rules file {path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"rules file {path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    try:
        entries = _File.model_validate(raw).targets
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"rules file {path}: {field}: {err['msg']}") from None
    out: list[tuple[Entry, list[Matcher]]] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ConfigError(f"rules file {path}: two targets are named {entry.name!r}")
        seen.add(entry.name)
        try:
            matchers = [m for text in entry.match for m in parse_matchers(text)]
        except MatcherError as exc:
            raise ConfigError(f"rules file {path}: target {entry.name!r}: {exc}") from None
        out.append((entry, matchers))
    return out


def load(rules_file: str | None, public_url: str | None, env: Mapping[str, str] | None = None) -> list[Target]:
    """The targets to deliver to, their secrets read from the environment; none without a rules file."""
    if not rules_file:
        return []
    environ = os.environ if env is None else env
    return [build(entry, matchers, environ, public_url) for entry, matchers in read(rules_file)]
