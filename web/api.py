"""Shared view machinery: domain errors → HTTP errors in one place, JSON in and out, auth."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import orjson
from aiohttp import web
from faust.web import View
from pydantic import BaseModel, ValidationError

from agents.ingest import describe_validation_error
from app import metrics
from app.errors import BrokerUnavailable, InvalidAlert

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class HTTPProblem(Exception):
    """A request we refuse, with the status and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_default)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


@asynccontextmanager
async def read_tx(pool: asyncpg.Pool, timeout_s: float) -> AsyncIterator[asyncpg.Connection]:
    """A read-only snapshot under a statement timeout: a slow regex or a huge range is cancelled, not left
    to hold a connection (the caller maps the cancellation to a 503 naming the timeout)."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
        yield conn


class ApiView(View):
    """Base of every view: maps our errors to JSON error responses, checks the bearer token on writes."""

    writes = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    async def dispatch(self, request: Any) -> Any:
        endpoint = getattr(self, "view_path", request.path)
        try:
            self._authorize(request)
            return await super().dispatch(request)
        except HTTPProblem as exc:
            return self._problem(endpoint, exc.status, exc.message)
        except InvalidAlert as exc:
            return self._problem(endpoint, 422, str(exc))
        except BrokerUnavailable as exc:
            log.warning("%s answered 503: %s", endpoint, exc)
            response = self._problem(
                endpoint,
                503,
                f"{exc}. Send the whole request again after Retry-After: any of its alerts Kafka did take count "
                "as resends of themselves, never as new events",
            )
            response.headers["Retry-After"] = str(exc.retry_after_s)
            return response
        except asyncpg.exceptions.QueryCanceledError:
            timeout = self.app.settings.query_timeout  # type: ignore[attr-defined]
            return self._problem(
                endpoint, 503, f"query cancelled after the {timeout:g} s statement timeout: narrow the range or filter"
            )
        except web.HTTPRequestEntityTooLarge as exc:
            limit = self.app.settings.max_body_bytes  # type: ignore[attr-defined]
            return self._problem(endpoint, 413, f"body larger than {limit} bytes ({exc.text})")

    def snapshot(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """Every read: a read-only snapshot on the query pool, under the statement timeout."""
        return read_tx(self.app.resources.db, self.app.settings.query_timeout)  # type: ignore[attr-defined]

    def _problem(self, endpoint: str, status: int, message: str) -> web.Response:
        metrics.REJECTED.labels(endpoint, str(status)).inc()
        return json_response({"error": message}, status=status)

    def _authorize(self, request: web.Request) -> None:
        token = self.app.settings.api_token  # type: ignore[attr-defined]
        if token is None or request.method not in self.writes:
            return
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPProblem(401, "missing or wrong Authorization: Bearer token (ALERT_HISTORY_API_TOKEN is set)")


async def read_json(request: web.Request, model: type[M], wrap: Callable[[Any], Any] | None = None) -> tuple[M, Any]:
    """The body as `model` and as the JSON it was (what the bridge forwards); every failure names the field."""
    ctype = request.content_type
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise HTTPProblem(415, f"Content-Type must be application/json, got {ctype!r}")
    raw = await request.read()
    if not raw:
        raise HTTPProblem(400, "body is empty: expected a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPProblem(400, f"body is not valid JSON: {exc}") from None
    if wrap is not None:
        data = wrap(data)
    try:
        return model.model_validate(data), data
    except ValidationError as exc:
        raise HTTPProblem(422, describe_validation_error(exc)) from None


Handler = Callable[..., Awaitable[web.StreamResponse]]
