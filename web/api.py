"""Shared view machinery: domain errors → HTTP errors in one place, JSON in and out, auth."""

from __future__ import annotations

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
from web import auth

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
    """Base of every view: maps our errors to JSON error responses, lets a request in by web.auth's rule."""

    async def dispatch(self, request: Any) -> Any:
        endpoint = getattr(self, "view_path", request.path)
        try:
            denied = await self._authorize(request)
            if denied is not None:
                return self._unauthorized(endpoint, denied)
            return await super().dispatch(request)
        except HTTPProblem as exc:
            return self._problem(endpoint, exc.status, exc.message)
        except InvalidAlert as exc:
            return self._problem(endpoint, 422, str(exc))
        except BrokerUnavailable as exc:
            log.error("broker unavailable: %s", exc)
            return self._problem(endpoint, 503, f"Kafka unavailable, nothing was accepted: {exc}")
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

    def _route(self, request: web.Request) -> str:
        """The pattern the request matched (/alerts/{fingerprint}/history), which web.auth's rule is keyed by."""
        resource = request.match_info.route.resource
        return resource.canonical if resource is not None else getattr(self, "view_path", request.path)

    async def _authorize(self, request: web.Request, need: auth.Access | None = None) -> auth.Denied | None:
        """None when the request may pass (as `need`, by default what its route and method need)."""
        route = self._route(request)
        need = need or auth.access(request.method, route)
        keys = auth.Keys.from_settings(self.app.settings)  # type: ignore[attr-defined]
        signable = route in auth.SIGNED_ROUTES
        body = None
        if signable and keys.webhook is not None and auth.SIGNATURE_HEADER in request.headers and keys.guards(need):
            body = await request.read()  # aiohttp keeps it: read_json reads the same bytes again
        return auth.decide(keys, need, request.headers, signable=signable, body=body)

    async def may_read(self, request: web.Request) -> bool:
        return await self._authorize(request, auth.Access.READ) is None

    def _unauthorized(self, endpoint: str, denied: auth.Denied) -> web.Response:
        metrics.REJECTED.labels(endpoint, "401").inc()
        return json_response({"error": denied.message}, status=401, headers={"WWW-Authenticate": denied.challenge})


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
