"""What every outbound target shares: the interface (a name, its matchers, its delivery settings, and the request
one notify message becomes), the one HTTP send with its status rule (app.retry), and secrets read from the
environment and handed to app.redact. Each target's own module holds its config check and its body only.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, Protocol
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import orjson

from app import redact, rules
from app.errors import ConfigError
from app.matchers import Matcher
from app.retry import HTTPStatusError, StatusRule, parse_retry_after, status_rule
from app.rules import Delivery
from sinks.publishers.message import NotifyMessage

DETAIL_BYTES = 512  # of an error answer's body, kept in the error (redacted): what the target said was wrong
# A URL path this long is a token (Slack's /services/T…/B…/…), masked wherever it shows; a short one is a route.
SECRET_PATH_CHARS = 16

try:
    USER_AGENT = f"alert-history/{version('alert-history')}"
except PackageNotFoundError:  # running from a checkout that was never installed
    USER_AGENT = "alert-history"


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class Target(Protocol):
    kind: ClassVar[str]

    @property
    def name(self) -> str: ...

    @property
    def delivery(self) -> Delivery: ...

    @property
    def matchers(self) -> Sequence[Matcher]: ...

    def request(self, message: NotifyMessage) -> Request:
        """The HTTP request that delivers `message` to this target (pure)."""
        ...


# A target of the rules file, as app/rules.py validated it.
Spec = rules.Target


def matches(target: Target, labels: Mapping[str, str]) -> bool:
    """All of the target's matchers hold (no matchers: every event)."""
    return all(m.matches(labels) for m in target.matchers)


async def send(session: aiohttp.ClientSession, request: Request, timeout_s: float) -> int:
    """POST the request; its status if 2xx, else HTTPStatusError (with Retry-After where the rule honours it).
    Redirects are not followed: the body may carry a secret (a routing key) that must not go elsewhere."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **request.headers}
    async with session.post(
        request.url, data=orjson.dumps(request.body), headers=headers, allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as resp:  # fmt: skip
        if status_rule(resp.status) is StatusRule.OK:
            await resp.read()
            return resp.status
        detail = (await resp.content.read(DETAIL_BYTES)).decode(errors="replace").strip()
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise HTTPStatusError(resp.status, redact.redact(" ".join(detail.split())), retry_after)


def secret_from_env(env: Mapping[str, str], target: str, setting: str, name: str) -> str:
    """The value of environment variable `name`, remembered as a secret; ConfigError naming the target if unset."""
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"target {target!r}: {setting} names {name}, which is not set in the environment")
    redact.remember([value])
    return value


def target_url(spec: Spec, env: Mapping[str, str], default: str | None = None) -> str:
    """The target's URL: `url` as written, or the value of `url_env` (a secret: it and its parts are masked)."""
    if spec.url_env:
        url = secret_from_env(env, spec.name, "url_env", spec.url_env)
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        redact.remember([*redact.url_secrets(url), *([path] if len(path) >= SECRET_PATH_CHARS else [])])
        if parts.password:  # sent as Basic credentials: that form is the same secret
            basic = f"{unquote(parts.username or '')}:{unquote(parts.password)}".encode()
            redact.remember([base64.b64encode(basic).decode()])
    elif spec.url:
        url = spec.url
    elif default:
        url = default
    else:
        raise ConfigError(f"target {spec.name!r} ({spec.type}): set url or url_env")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        where = f"the value of {spec.url_env}" if spec.url_env else "url"
        raise ConfigError(f"target {spec.name!r}: {where} is not an http:// or https:// URL")
    return url


def timeline_url(public_url: str | None, fingerprint: str) -> str | None:
    """The alert's timeline in this service, when its public URL is known."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/alerts/{quote(fingerprint, safe='')}/history"


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
