"""Who may call what: the access rule as data, and one pure decision every view goes through (web.api).

A route is open, a read or a write. Open routes are listed here; every other route is a read (GET, HEAD,
OPTIONS) or a write (POST, PUT, PATCH, DELETE) by its method, so a route added to web/routes.py (`/events`,
the dashboard's data) is guarded from its first line without code of its own.

- writes: `Authorization: Bearer <API_TOKEN>` when API_TOKEN is set; on the signed routes (POST /webhook) a
  valid `X-Alert-History-Signature: sha256=<hex HMAC-SHA256 of the raw body, key WEBHOOK_SECRET>` passes too.
- reads: `Authorization: Bearer <READ_TOKEN>` when READ_TOKEN is set; the API token passes for reads as well
  (whoever may write may read what they wrote).
- open routes: always, for probes and scrapers; /readyz shows its per-check details only to readers.

Every comparison is constant-time (hmac.compare_digest on bytes). A header that does not encode as UTF-8
is refused like a wrong one: a 401, never an error. Messages name what is missing and never echo what was sent.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import SecretStr

from app.settings import ENV_PREFIX, Settings


class Access(StrEnum):
    OPEN = "open"
    READ = "read"
    WRITE = "write"


# The rule, as data: routes anyone may call, and routes where the webhook signature stands in for the token.
# The dashboard's shell and static files hold no data (the page reads it with the token): a browser opens them.
OPEN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/", "/static/{name}"})
SIGNED_ROUTES = frozenset({"/webhook"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SIGNATURE_HEADER = "X-Alert-History-Signature"
SIGNATURE_PREFIX = "sha256="

_WRITE_NEEDS = f"Authorization: Bearer <{ENV_PREFIX}API_TOKEN>"
_READ_NEEDS = f"Authorization: Bearer <{ENV_PREFIX}READ_TOKEN or {ENV_PREFIX}API_TOKEN>"
_SIGNED_NEEDS = f"{SIGNATURE_HEADER}: {SIGNATURE_PREFIX}<hex HMAC-SHA256 of the body with {ENV_PREFIX}WEBHOOK_SECRET>"
_MISSING = "the Authorization header is missing"


def access(method: str, route: str) -> Access:
    """What a request to `route` (the route's pattern, e.g. /alerts/{fingerprint}/history) needs."""
    if route in OPEN_ROUTES:
        return Access.OPEN
    return Access.WRITE if method.upper() in WRITE_METHODS else Access.READ


@dataclass(frozen=True)
class Keys:
    """The configured secrets as bytes, ready for constant-time comparison."""

    write: bytes | None = None
    read: bytes | None = None
    webhook: bytes | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        def raw(secret: SecretStr | None) -> bytes | None:
            return None if secret is None else secret.get_secret_value().encode()

        return cls(raw(settings.api_token), raw(settings.read_token), raw(settings.webhook_secret))

    def guards(self, need: Access) -> bool:
        """Whether `need` is guarded at all (an unset token leaves its kind of request open)."""
        return (need is Access.WRITE and self.write is not None) or (need is Access.READ and self.read is not None)


@dataclass(frozen=True)
class Denied:
    """Why a request is refused (the 401's `error`), and its WWW-Authenticate challenge (RFC 6750)."""

    message: str
    challenge: str


def decide(
    keys: Keys, need: Access, headers: Mapping[str, str], *, signable: bool = False, body: bytes | None = None
) -> Denied | None:
    """None when the request may pass, else why not. `signable`: the route takes the webhook signature instead
    of the token; `body`: its raw bytes, which the caller reads only when a signature came with the request."""
    if not keys.guards(need):
        return None
    signature_key = keys.webhook if signable and need is Access.WRITE else None
    needs = _WRITE_NEEDS if need is Access.WRITE else _READ_NEEDS
    problems = []
    if signature_key is not None:
        needs += f" or {_SIGNED_NEEDS}"
        if SIGNATURE_HEADER in headers:
            problem = _signature_problem(signature_key, headers[SIGNATURE_HEADER], body or b"")
            if problem is None:
                return None
            problems.append(problem)
    token, problem = _bearer(headers.get("Authorization"))
    if token is not None:
        write_ok = _equal(keys.write, token)
        read_ok = _equal(keys.read, token)  # both compared always: the time taken does not say which one matched
        if write_ok or (need is Access.READ and read_ok):
            return None
        problem = "a read token does not allow writes" if read_ok else "the token does not match"
    if problem != _MISSING or not problems:
        problems.append(problem)
    error = "invalid_token" if token is not None else None if problem == _MISSING else "invalid_request"
    return Denied(f"{needs}: {'; '.join(problems)}", _challenge(error))


def _bearer(header: str | None) -> tuple[bytes | None, str]:
    """The token of `Bearer <token>` as bytes, or None and what is wrong with the header."""
    if header is None:
        return None, _MISSING
    try:
        raw = header.encode()
    except UnicodeEncodeError:  # aiohttp keeps undecodable bytes as surrogates
        return None, "the Authorization header is not valid UTF-8"
    scheme, _, token = raw.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None, "the Authorization header is not a Bearer token"
    return token.strip(), ""


def _signature_problem(key: bytes, header: str, body: bytes) -> str | None:
    """None when the header is the body's HMAC-SHA256 under `key`, else what is wrong."""
    try:
        given = header.strip().encode("ascii").lower()
    except UnicodeEncodeError:
        return f"{SIGNATURE_HEADER} is not ASCII"
    if not given.startswith(SIGNATURE_PREFIX.encode()):
        return f"{SIGNATURE_HEADER} must be {SIGNATURE_PREFIX}<hex digest>"
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, given.removeprefix(SIGNATURE_PREFIX.encode())):
        return f"{SIGNATURE_HEADER} does not match the body"
    return None


def _equal(key: bytes | None, given: bytes) -> bool:
    return key is not None and hmac.compare_digest(key, given)


def _challenge(error: str | None) -> str:
    return 'Bearer realm="alert-history"' + (f', error="{error}"' if error else "")


def sign(key: bytes, body: bytes) -> str:
    """The signature header's value a sender puts on `body` (what `openssl dgst -sha256 -hmac` prints, prefixed)."""
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def open_access_warnings(settings: Settings) -> list[str]:
    """What a starting web server should warn about: writes open to anyone, or reads open beyond loopback."""
    if not settings.web_enabled:
        return []
    port = settings.web_port
    warnings = []
    if settings.api_token is None:
        also = f" ({ENV_PREFIX}WEBHOOK_SECRET does not close them)" if settings.webhook_secret is not None else ""
        warnings.append(
            f"{ENV_PREFIX}API_TOKEN is not set: writes (POST /webhook, POST /api/v2/alerts, …) on port {port} are "
            f"open to anyone who can reach it{also}; set it to require Authorization: Bearer <token>"
        )
    if settings.read_token is None and not is_loopback(settings.web_host):
        warnings.append(
            f"{ENV_PREFIX}READ_TOKEN is not set and the API listens on {settings.web_host}:{port}, beyond loopback: "
            f"the alert history is readable by anyone who can reach it; set {ENV_PREFIX}READ_TOKEN to guard reads"
        )
    return warnings


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[] ")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
