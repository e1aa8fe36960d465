"""Shared view machinery: domain errors → HTTP errors in one place, JSON in and out, auth."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import orjson
from aiohttp import web
from faust.web import View
from pydantic import BaseModel, ValidationError

from app import metrics
from app.errors import AlertHistoryError, BrokerUnavailable, InvalidAlert
from app.events import rfc3339
from app.matchers import Matcher, MatchOp
from app.validation import describe_validation_error
from sinks.postgres import is_retryable
from web import auth

if TYPE_CHECKING:  # app.faust_app imports the views
    from app.faust_app import AlertHistoryApp

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class HTTPProblem(Exception):
    """A request we refuse, with the status and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_default)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


class DatabaseUnavailable(AlertHistoryError):
    """A read PostgreSQL did not answer (client-side timeout) or could not be reached; the request gets a 503."""


class Busy(HTTPProblem):
    """A request refused for want of capacity; the client may retry after `retry_after_s`."""

    def __init__(self, status: int, message: str, retry_after_s: int) -> None:
        super().__init__(status, message)
        self.retry_after_s = retry_after_s


@asynccontextmanager
async def read_tx(
    pool: asyncpg.Pool, timeout_s: float, regexes: Sequence[tuple[str, str]] = ()
) -> AsyncIterator[asyncpg.Connection]:
    """A read-only snapshot under a statement timeout: a slow regex or a huge range is cancelled, not left
    to hold a connection (the caller maps the cancellation to a 503 naming the timeout).

    `regexes` are (what, pattern) pairs the reads will run: compiled by PostgreSQL first, in one statement, so a
    pattern it rejects is a 400 naming it. A connection that fails or does not answer (the pool's client-side
    timeout) is closed at once, never reused or waited for, and raises DatabaseUnavailable.
    """
    try:
        conn = await pool.acquire(timeout=timeout_s)
    except Exception as exc:
        if _unavailable_error(exc):
            raise DatabaseUnavailable(
                _unavailable(exc, f"no read connection to PostgreSQL within {timeout_s:g} s")
            ) from exc
        raise
    try:
        tx = conn.transaction(readonly=True, isolation="repeatable_read")
        await tx.start()
        checked = False
        try:
            # No JIT: a read over many day partitions compiled hundreds of functions, seconds of CPU for a query
            # that runs in less (docs/performance.md).
            await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}; SET LOCAL jit = off")
            if regexes:
                await conn.fetchrow(
                    "SELECT " + ", ".join(f"'' ~ ${i}" for i in range(1, len(regexes) + 1)), *(p for _, p in regexes)
                )
            checked = True
            yield conn
        except BaseException as exc:
            if isinstance(exc, Exception) and not _unavailable_error(exc):
                await tx.rollback()
            else:  # a cancelled or unanswered statement: the connection's state is unknown
                conn.terminate()
            if isinstance(exc, asyncpg.exceptions.InvalidRegularExpressionError) and not checked:
                raise HTTPProblem(400, await _rejected_regex(conn, regexes)) from None
            raise
        await tx.rollback()  # read-only: nothing to commit
    except Exception as exc:
        if _unavailable_error(exc):
            conn.terminate()  # its state is unknown: waiting for a cancel or a rollback could hang as long again
            raise DatabaseUnavailable(
                _unavailable(exc, f"PostgreSQL did not answer within the {timeout_s:g} s query timeout and a margin")
            ) from exc
        raise
    finally:
        await pool.release(conn)


def _unavailable_error(exc: BaseException) -> bool:
    """PostgreSQL unreachable, not answering (the pool's client-side timeout) or out of connections."""
    return is_retryable(exc) or isinstance(exc, asyncpg.exceptions.InsufficientResourcesError)


def _unavailable(exc: BaseException, what: str) -> str:
    if isinstance(exc, TimeoutError):
        return f"{what} (client-side timeout): it may be overloaded or hung; nothing was read, try again later"
    return f"PostgreSQL unavailable ({type(exc).__name__}: {exc}); nothing was read, try again later"


async def _rejected_regex(conn: asyncpg.Connection, regexes: Sequence[tuple[str, str]]) -> str:
    """After the combined check failed: which regex PostgreSQL rejects, and why (outside the snapshot)."""
    for what, pattern in regexes:
        try:
            await conn.fetchval("SELECT '' ~ $1", pattern)
        except asyncpg.exceptions.InvalidRegularExpressionError as exc:
            return f"filter: bad matcher {what}: PostgreSQL, which runs it, rejects the regular expression: {exc}"
    return "filter: PostgreSQL rejects one of the regular expressions"


class ApiView(View):
    """Base of every view: maps our errors to JSON error responses, lets a request in by web.auth's rule."""

    app: AlertHistoryApp  # the app every view runs in (app/faust_app.py): its settings and resources, typed

    async def dispatch(self, request: Any) -> Any:
        endpoint = getattr(self, "view_path", request.path)
        try:
            denied = await self._authorize(request)
            if denied is not None:
                return self._unauthorized(endpoint, denied)
            return await super().dispatch(request)
        except Busy as exc:
            response = self._problem(endpoint, exc.status, exc.message)
            response.headers["Retry-After"] = str(exc.retry_after_s)
            return response
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
            timeout = self.app.settings.query_timeout
            return self._problem(
                endpoint, 503, f"query cancelled after the {timeout:g} s statement timeout: narrow the range or filter"
            )
        except DatabaseUnavailable as exc:
            log.warning("read failed: %s", exc)
            return self._problem(endpoint, 503, str(exc))
        except web.HTTPRequestEntityTooLarge as exc:
            limit = self.app.settings.max_body_bytes
            return self._problem(endpoint, 413, f"body larger than {limit} bytes ({exc.text})")

    def snapshot(self, matchers: Sequence[Matcher] = ()) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """Every read: a read-only snapshot on the query pool, under the statement timeout, once PostgreSQL has
        compiled the regexes of `matchers` (the ones the reads will run)."""
        regexes = [(str(m), m.sql_regex) for m in matchers if m.op in (MatchOp.RE, MatchOp.NRE)]
        return read_tx(self.app.resources.db, self.app.settings.query_timeout, regexes)

    def error_body(self, message: str) -> Any:
        """An error response's JSON body; the Alertmanager-compatible views answer as Alertmanager does."""
        return {"error": message}

    def _problem(self, endpoint: str, status: int, message: str) -> web.Response:
        metrics.REJECTED.labels(endpoint, str(status)).inc()
        return json_response(self.error_body(message), status=status)

    def _route(self, request: web.Request) -> str:
        """The pattern the request matched (/alerts/{fingerprint}/history), which web.auth's rule is keyed by."""
        resource = request.match_info.route.resource
        return resource.canonical if resource is not None else getattr(self, "view_path", request.path)

    async def _authorize(self, request: web.Request, need: auth.Access | None = None) -> auth.Denied | None:
        """None when the request may pass (as `need`, by default what its route and method need)."""
        route = self._route(request)
        need = need or auth.access(request.method, route)
        keys = auth.Keys.from_settings(self.app.settings)
        signable = route in auth.SIGNED_ROUTES
        body = None
        if signable and keys.webhook is not None and auth.SIGNATURE_HEADER in request.headers and keys.guards(need):
            body = await request.read()  # aiohttp keeps it: read_json reads the same bytes again
        return auth.decide(keys, need, request.headers, signable=signable, body=body)

    async def may_read(self, request: web.Request) -> bool:
        return await self._authorize(request, auth.Access.READ) is None

    def _unauthorized(self, endpoint: str, denied: auth.Denied) -> web.Response:
        metrics.REJECTED.labels(endpoint, "401").inc()
        return json_response(
            self.error_body(denied.message), status=401, headers={"WWW-Authenticate": denied.challenge}
        )


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
