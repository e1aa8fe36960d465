"""Query-string parameters → typed values; every failure is an HTTPProblem naming the parameter."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

from multidict import MultiMapping

from app.matchers import MAX_REGEX_LEN, Matcher, MatcherError, parse_filters
from web.api import HTTPProblem

_RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(name: str, raw: str, now: datetime) -> datetime:
    """RFC 3339 (`2024-05-01T12:00:00Z`), `now`, or relative to now (`-6h`, `30m`, `7d`)."""
    text = raw.strip()
    if text == "now":
        return now
    rel = _RELATIVE.match(text)
    if rel:
        return now - timedelta(seconds=float(rel.group(1)) * _UNIT_S[rel.group(2)])
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise HTTPProblem(400, f"{name}: {raw!r} is neither RFC 3339 nor a relative time like -6h") from None
    if value.tzinfo is None:
        raise HTTPProblem(400, f"{name}: {raw!r} has no time zone; use Z or an offset (RFC 3339)")
    return value.astimezone(UTC)


def time_range(query: MultiMapping[str], now: datetime) -> tuple[datetime | None, datetime | None]:
    since = parse_time("since", query["since"], now) if query.get("since") else None
    until = parse_time("until", query["until"], now) if query.get("until") else None
    if since and until and since > until:
        raise HTTPProblem(400, "since is after until")
    return since, until


def matchers(query: MultiMapping[str]) -> list[Matcher]:
    try:
        return parse_filters(query.getall("filter", []))
    except MatcherError as exc:
        raise HTTPProblem(400, f"filter: {exc}") from None


def integer(query: MultiMapping[str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPProblem(400, f"{name}: {raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise HTTPProblem(400, f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def boolean(query: MultiMapping[str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise HTTPProblem(400, f"{name}: must be true or false, got {raw!r}")


def regex(query: MultiMapping[str], name: str) -> re.Pattern[str] | None:
    raw = query.get(name)
    if not raw:
        return None
    if len(raw) > MAX_REGEX_LEN:
        raise HTTPProblem(400, f"{name}: regex longer than {MAX_REGEX_LEN} characters")
    try:
        return re.compile(raw)
    except re.error as exc:
        raise HTTPProblem(400, f"{name}: invalid regex {raw!r}: {exc}") from None


def status(query: MultiMapping[str]) -> str | None:
    raw = query.get("status")
    if raw in (None, ""):
        return None
    if raw not in ("firing", "resolved"):
        raise HTTPProblem(400, f"status: must be firing or resolved, got {raw!r}")
    return raw


def encode_cursor(received_at: datetime, event_id: int) -> str:
    """Opaque to clients: the (received_at, id) keyset position of the last row of a page."""
    micros = (received_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"k{micros}.{event_id}".encode()).decode().rstrip("=")


def decode_cursor(query: MultiMapping[str]) -> tuple[datetime, int] | None:
    raw = query.get("cursor")
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        if text.startswith("k"):
            micros, event_id = text[1:].split(".")
            return _EPOCH + timedelta(microseconds=int(micros)), int(event_id)
    except (ValueError, UnicodeDecodeError, OverflowError):
        pass
    raise HTTPProblem(400, "cursor: not a cursor this service returned")
