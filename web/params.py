"""Query-string parameters → typed values; every failure is an HTTPProblem naming the parameter.

A read view starts with `read(request, Model)`: the query string decoded strictly (UTF-8, no NUL), so nothing
PostgreSQL or a codec would refuse later reaches a statement, then read by the fields of its model in
web/models.py, whose bounds, defaults and choices are those /openapi.json documents.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args, get_origin
from urllib.parse import unquote_to_bytes

from aiohttp import web
from annotated_types import Ge, Le, MaxLen
from multidict import MultiDict, MultiDictProxy, MultiMapping
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from app.matchers import Matcher, MatcherError, compile_re2, parse_filters
from web.api import HTTPProblem

_RELATIVE = re.compile(r"^-?(\d{1,12}(?:\.\d{1,9})?)(ms|s|m|h|d|w)$", re.ASCII)
_INTEGER = re.compile(r"^[+-]?\d{1,18}$", re.ASCII)
_CURSOR = re.compile(r"^k(-?\d{1,19})\.(\d{1,19})$", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Times are Python datetimes in UTC: years 1 to 9999 (PostgreSQL's timestamptz holds more).
MIN_TIME = datetime.min.replace(tzinfo=UTC)
MAX_TIME = datetime.max.replace(tzinfo=UTC)
MAX_EVENT_ID = 2**63 - 1  # alert_events.id is a bigint


def query(request: web.Request) -> MultiDictProxy[str]:
    """The query string, each name and value percent-decoded as strict UTF-8 and free of NUL."""
    out: MultiDict[str] = MultiDict()
    raw = request.rel_url.raw_query_string
    for pair in raw.split("&") if raw else ():
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition("=")
        name = _decode(raw_name, None)
        out.add(name, _decode(raw_value, name))
    return MultiDictProxy(out)


def _decode(raw: str, name: str | None) -> str:
    what = name if name is not None else "a parameter name"
    try:
        text = unquote_to_bytes(raw.replace("+", " ")).decode("utf-8")
    except UnicodeError:  # invalid UTF-8 after decoding, or undecodable bytes in the request line itself
        raise HTTPProblem(400, f"{what}: not valid UTF-8 once percent-decoded ({raw[:40]!r})") from None
    if "\x00" in text:
        raise HTTPProblem(400, f"{what}: contains a NUL character (%00)")
    return text


def parse_time(name: str, raw: str, now: datetime, max_len: int) -> datetime:
    """RFC 3339 (`2024-05-01T12:00:00Z`), `now`, or relative to now (`-6h`, `30m`, `7d`)."""
    text = raw.strip()
    if len(text) > max_len:
        raise HTTPProblem(400, f"{name}: longer than {max_len} characters")
    if text == "now":
        return now
    rel = _RELATIVE.match(text)
    try:
        if rel:
            return now - timedelta(seconds=float(rel.group(1)) * _UNIT_S[rel.group(2)])
        value = datetime.fromisoformat(text.replace("z", "Z"))
        if value.tzinfo is None:
            raise HTTPProblem(400, f"{name}: {raw!r} has no time zone; use Z or an offset (RFC 3339)")
        return value.astimezone(UTC)
    except ValueError:
        raise HTTPProblem(400, f"{name}: {raw!r} is neither RFC 3339 nor a relative time like -6h") from None
    except OverflowError:
        raise HTTPProblem(
            400, f"{name}: {raw!r} is out of range: times must lie between {_iso(MIN_TIME)} and {_iso(MAX_TIME)}"
        ) from None


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def day_before(t: datetime) -> datetime:
    """`t` less a day, or the earliest time there is."""
    return t - timedelta(days=1) if t - MIN_TIME >= timedelta(days=1) else MIN_TIME


def read(request: web.Request, model: type[BaseModel]) -> Params:
    """A view's query parameters, as `model` (web/models.py) declares them; the query string checked first."""
    return Params(query(request), model)


def header(request: web.Request, model: type[BaseModel], name: str) -> str | None:
    """A request header the view reads, by its field in `model` (web/models.py: the field's alias is the header)."""
    return request.headers.get(_field(model, name).alias or name)


def _field(model: type[BaseModel], name: str) -> FieldInfo:
    field = model.model_fields.get(name)
    assert field is not None, f"{name} is not a parameter of {model.__name__}: declare it in web/models.py"
    return field


def _bound(field: FieldInfo, kind: type[Any], attr: str) -> Any:
    """A constraint of the field (Field(ge=1) is metadata Ge(ge=1)): the model must declare it."""
    found = [getattr(m, attr) for m in field.metadata if isinstance(m, kind)]
    assert found, f"{field} declares no {attr}"
    return found[0]


def _choices(annotation: Any) -> tuple[str, ...]:
    """The values of a Literal, or of an optional Literal."""
    if get_origin(annotation) is Literal:
        return tuple(get_args(annotation))
    return tuple(v for arg in get_args(annotation) if arg is not type(None) for v in _choices(arg))


@dataclass(frozen=True)
class Params:
    """The decoded query string of one request, read by the fields of its model: bounds, defaults and choices
    come from the model, which /openapi.json is generated from; reading an undeclared parameter is an error."""

    q: MultiMapping[str]
    model: type[BaseModel]

    def one(self, name: str) -> str | None:
        """A parameter given at most once; None when absent or empty."""
        _field(self.model, name)
        values = self.q.getall(name, [])
        if len(values) > 1:
            raise HTTPProblem(400, f"{name}: given {len(values)} times; give it once")
        return values[0] if values and values[0] != "" else None

    def all(self, name: str) -> list[str]:
        _field(self.model, name)
        return self.q.getall(name, [])

    def time_range(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        times = []
        for name in ("since", "until"):
            raw, max_len = self.one(name), _bound(_field(self.model, name), MaxLen, "max_length")
            times.append(parse_time(name, raw, now, max_len) if raw else None)
        since, until = times
        if since and until and since > until:
            raise HTTPProblem(400, "since is after until")
        return since, until

    def moment(self, name: str) -> datetime | None:
        """A point in time (`at`: time travel) as parse_time reads it, or None when absent."""
        raw = self.one(name)
        if raw is None:
            return None
        return parse_time(name, raw, datetime.now(UTC), _bound(_field(self.model, name), MaxLen, "max_length"))

    def matchers(self) -> list[Matcher]:
        try:
            return parse_filters(self.all("filter"))
        except MatcherError as exc:
            raise HTTPProblem(400, f"filter: {exc}") from None

    def integer(self, name: str) -> int:
        field = _field(self.model, name)
        default, lo, hi = field.default, _bound(field, Ge, "ge"), _bound(field, Le, "le")
        raw = self.one(name)
        if raw is None:
            return int(default)
        if not _INTEGER.match(raw):
            raise HTTPProblem(400, f"{name}: {raw[:40]!r} is not an integer between {lo} and {hi}")
        value = int(raw)
        if not lo <= value <= hi:
            raise HTTPProblem(400, f"{name}: must be between {lo} and {hi}, got {value}")
        return value

    def boolean(self, name: str) -> bool:
        default = _field(self.model, name).default
        raw = self.one(name)
        if raw is None:
            return bool(default)
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise HTTPProblem(400, f"{name}: must be true or false, got {raw[:40]!r}")

    def choice(self, name: str) -> str | None:
        """An enumerated parameter: one of the model's Literal values, or its default when absent."""
        field = _field(self.model, name)
        allowed = _choices(field.annotation)
        raw = self.one(name)
        if raw is None:
            return str(field.default) if field.default is not None else None
        if raw not in allowed:
            raise HTTPProblem(400, f"{name}: must be one of {', '.join(allowed)}, got {raw[:40]!r}")
        return raw

    def regex(self, name: str) -> Any:
        """An Alertmanager regex parameter (RE2, matched in Python in linear time), or None."""
        raw = self.one(name)
        if raw is None:
            return None
        try:
            return compile_re2(raw)
        except ValueError as exc:
            raise HTTPProblem(400, f"{name}: invalid regular expression (RE2) {raw[:40]!r}: {exc}") from None

    def cursor(self) -> tuple[datetime, int] | None:
        """The keyset position of a `cursor` this service returned (encode_cursor), or None."""
        raw = self.one("cursor")
        if raw is None:
            return None
        try:
            m = _CURSOR.match(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii"))
            if m and int(m.group(2)) <= MAX_EVENT_ID:
                return _EPOCH + timedelta(microseconds=int(m.group(1))), int(m.group(2))
        except (ValueError, UnicodeError, OverflowError):  # binascii.Error is a ValueError
            pass
        raise HTTPProblem(400, "cursor: not a cursor this service returned")


def encode_cursor(received_at: datetime, event_id: int) -> str:
    """Opaque to clients: the (received_at, id) keyset position of the last row of a page."""
    micros = (received_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"k{micros}.{event_id}".encode()).decode().rstrip("=")
