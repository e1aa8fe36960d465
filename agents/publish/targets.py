"""The publish agent's targets: the rules file's `targets:` (app/rules.py reads and validates the file), each
built with its secrets from the environment (sinks/publishers), or a ConfigError naming the file, the target and
what is wrong (never a secret's value)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from app import rules
from app.errors import ConfigError
from sinks.publishers import build
from sinks.publishers.base import Target


def load(rules_file: str | None, public_url: str | None, env: Mapping[str, str] | None = None) -> list[Target]:
    """The targets to deliver to; none without a rules file."""
    if not rules_file:
        return []
    environ = os.environ if env is None else env
    out = []
    for spec in rules.load(rules_file).targets:
        try:
            out.append(build(spec, spec.matchers, environ, public_url))
        except ConfigError as exc:
            raise ConfigError(f"{rules_file}: {exc}") from None
    return out
