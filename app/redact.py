"""Secrets out of every error and log line: a URL's password and the configured secret values become `***`.

One helper for the whole service (Alertmanager's `RedactURL`, widened): settings errors, the retry helper's
warnings, /readyz, start messages and, as a backstop, every log record (app/logs.py) pass through `redact`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from app.settings import Settings

MASK = "***"
# A value this short is no secret worth masking, and masking it would garble every line it occurs in.
MIN_KNOWN_LENGTH = 4

# scheme://user:PASSWORD@host: the password stops at the first `@`, `/` or whitespace.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<password>[^@/\s]*)(?P<at>@)")
# libpq keyword DSNs and URL query parameters: password=..., sslpassword=...
_PASSWORD_PARAM = re.compile(r"(\b(?:ssl)?pass(?:word|wd)?=)[^&\s'\"]+", re.IGNORECASE)

_known: tuple[str, ...] = ()


def url_secrets(url: str | None) -> list[str]:
    """The password of a URL as written (percent-encoded) and decoded; [] when it has none or is not a URL."""
    if not url:
        return []
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password is None:
        match = _URL_PASSWORD.search(url)  # urlsplit gave up (a bad port, say): the pattern still finds it
        password = match["password"] if match else None
    return [password, unquote(password)] if password else []


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value the settings hold: tokens, the webhook secret, the LLM key, the URLs' passwords."""
    values = [
        secret.get_secret_value()
        for secret in (settings.api_token, settings.read_token, settings.webhook_secret, settings.llm_api_key)
        if secret is not None
    ]
    for url in (settings.database_url, settings.redis_url, settings.llm_url):
        values += url_secrets(url)
    return values


def remember(values: Iterable[str]) -> None:
    """Add values `redact` masks wherever they occur, for the rest of the process."""
    global _known
    wanted = set(_known) | {v for v in values if v and len(v) >= MIN_KNOWN_LENGTH}
    _known = tuple(sorted(wanted, key=len, reverse=True))  # longest first: a secret inside another is masked whole


def remember_settings(settings: Settings) -> None:
    remember(settings_secrets(settings))


def redact(text: str) -> str:
    """`text` with URL passwords, password parameters and every remembered secret value masked."""
    for value in _known:
        if value in text:
            text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(rf"\g<head>{MASK}\g<at>", text)
    return _PASSWORD_PARAM.sub(rf"\1{MASK}", text)


def describe(exc: BaseException) -> str:
    """An exception as `Type: message`, redacted: what the logs get instead of its repr."""
    message = redact(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
