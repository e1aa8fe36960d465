"""The LLM classifier: an OpenAI-compatible `POST {LLM_URL}/chat/completions` with the `classify_alert` tool forced.

Every call is bounded by one deadline (`LLM_TIMEOUT`) that covers waiting for a concurrency slot, the rate limit
and the request: an LLM that is slow or down costs a batch at most that long. Nothing is retried: whatever goes
wrong falls back on the rules' result, counted by its outcome, and the alert's next event asks again (only
answers are cached). After `BREAKER_FAILURES` failures in a row the LLM is not asked for `BREAKER_COOLDOWN_S`,
so a dead endpoint does not cost every batch the whole timeout. The API key goes in one header and nowhere else;
what is logged is redacted (app/redact.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import aiohttp
import orjson
from pydantic import ValidationError
from yarl import URL

from agents.enrich.model import Verdict, tool_schema
from app import metrics
from app.breaker import BreakerOpen, BreakerState, CircuitBreaker
from app.redact import describe, redact
from app.settings import Settings

log = logging.getLogger(__name__)

TOOL = "classify_alert"
MAX_TEXT = 1000  # characters of one label or annotation value in a prompt: prompts stay small
MAX_ANSWER_BYTES = 256 * 1024
BREAKER_FAILURES = 5
BREAKER_COOLDOWN_S = 30.0
SYSTEM_PROMPT = (
    "You classify Prometheus alerts for an on-call engineer. Call classify_alert once with: a short lowercase "
    "category; the severity (critical: act now, warning: act soon, info: no action needed, noise: not worth a "
    "notification); your confidence from 0 to 1; one or two sentences of reasoning; and up to three concrete "
    "recommendations. Use only the alert given."
)


class Outcome(StrEnum):
    """How one classification request ended (the `outcome` label of alert_history_llm_requests_total)."""

    OK = "ok"
    TIMEOUT = "timeout"
    THROTTLED = "throttled"  # no slot or rate token within the deadline: not sent
    RATE_LIMITED = "rate_limited"  # HTTP 429
    SERVER_ERROR = "server_error"  # HTTP 5xx
    HTTP_ERROR = "http_error"  # any other non-2xx
    UNREACHABLE = "unreachable"
    MALFORMED = "malformed"  # not JSON, or no classify_alert tool call with JSON arguments
    INVALID = "invalid"  # a tool call outside the schema
    BREAKER_OPEN = "breaker_open"  # not sent: too many failures in a row just now
    ERROR = "error"  # anything else (the log says what)


# Failures of the endpoint itself (not of one answer, nor our own limits): these open the breaker.
_BREAKING = frozenset({Outcome.TIMEOUT, Outcome.RATE_LIMITED, Outcome.SERVER_ERROR, Outcome.HTTP_ERROR,
                       Outcome.UNREACHABLE})  # fmt: skip


class _Failed(Exception):
    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome


class RateLimit:
    """A token bucket: `rate` requests a second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, max(1.0, burst)
        self.tokens, self.at = self.burst, time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:  # one waiter at a time: tokens go out in order
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


def prompt(status: str, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    """The user message: the alert's status, labels and annotations, sorted and truncated (small and stable)."""
    alert = {
        "status": status,
        "labels": {k: v[:MAX_TEXT] for k, v in labels.items()},
        "annotations": {k: v[:MAX_TEXT] for k, v in annotations.items()},
    }
    return redact(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS).decode())


class LLM:
    def __init__(self, settings: Settings) -> None:
        assert settings.llm_url and settings.llm_model
        url = URL(settings.llm_url.rstrip("/") + "/chat/completions")
        self.url = url.with_user(None)  # credentials in the URL go in one header, like the key, never in a log line
        self.model = settings.llm_model
        self.timeout_s = settings.llm_timeout
        self._headers = {"Content-Type": "application/json"}
        if settings.llm_api_key is not None:
            self._headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
        elif url.user is not None:
            basic = base64.b64encode(f"{url.user}:{url.password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {basic}"
        self._concurrency = settings.llm_concurrency
        self._slots = asyncio.Semaphore(settings.llm_concurrency)
        self._rate = RateLimit(settings.llm_rate, settings.llm_concurrency)
        function = {"name": TOOL, "description": "Record the alert's classification.", "parameters": tool_schema()}
        self._tools = [{"type": "function", "function": function}]
        self._session: aiohttp.ClientSession | None = None
        self._breaker = CircuitBreaker(
            "the LLM", BREAKER_FAILURES, BREAKER_COOLDOWN_S, on_change=_breaker_changed
        )  # the one breaker of every outbound target (app/breaker.py)
        self._last_failure: str | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def classify(self, status: str, labels: Mapping[str, str], annotations: Mapping[str, str]) -> Verdict | None:
        """The LLM's verdict, or None (counted by outcome) when the rules must decide instead."""
        try:
            self._breaker.before_call()
        except BreakerOpen:
            metrics.LLM_REQUESTS.labels(Outcome.BREAKER_OPEN.value).inc()
            return None
        started = time.monotonic()
        sent = False
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._slots:
                    await self._rate.take()
                    sent = True
                    verdict = await self._request(prompt(status, labels, annotations))
        except _Failed as exc:
            self._failed(exc.outcome, str(exc))
            return None
        except TimeoutError:
            if sent:
                self._failed(Outcome.TIMEOUT, f"no answer within {self.timeout_s:g} s (ALERT_HISTORY_LLM_TIMEOUT)")
            else:
                self._failed(Outcome.THROTTLED, "no LLM slot or rate token within ALERT_HISTORY_LLM_TIMEOUT")
            return None
        except Exception as exc:  # whatever else goes wrong asking, the rules decide: never the batch failing
            self._failed(Outcome.ERROR, describe(exc))
            return None
        except BaseException:  # cancelled: no answer either way
            self._breaker.abandoned()
            raise
        metrics.LLM_SECONDS.observe(time.monotonic() - started)
        metrics.LLM_REQUESTS.labels(Outcome.OK.value).inc()
        if self._last_failure:
            log.info("LLM answering again")
        self._breaker.succeeded()
        self._last_failure = None
        return verdict

    async def _request(self, content: str) -> Verdict:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}],
            "tools": self._tools,
            "tool_choice": {"type": "function", "function": {"name": TOOL}},
            "temperature": 0,
        }
        session = self._session or self._open()
        try:
            async with session.post(self.url, data=orjson.dumps(body), headers=self._headers) as resp:
                raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
                status = resp.status
        except aiohttp.ClientError as exc:
            raise _Failed(Outcome.UNREACHABLE, describe(exc)) from None
        if status == 429:
            raise _Failed(Outcome.RATE_LIMITED, "HTTP 429 (the LLM's rate limit)")
        if status >= 500:
            raise _Failed(Outcome.SERVER_ERROR, f"HTTP {status}")
        if not 200 <= status < 300:
            raise _Failed(Outcome.HTTP_ERROR, f"HTTP {status}: {redact(raw[:200].decode(errors='replace'))}")
        if len(raw) > MAX_ANSWER_BYTES:
            raise _Failed(Outcome.MALFORMED, f"answer larger than {MAX_ANSWER_BYTES} bytes")
        return parse_answer(raw)

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency), raise_for_status=False
        )
        return self._session

    def _failed(self, outcome: Outcome, detail: str) -> None:
        metrics.LLM_REQUESTS.labels(outcome.value).inc()
        if outcome in _BREAKING:
            self._breaker.failed()
        elif outcome is Outcome.THROTTLED:
            self._breaker.abandoned()  # never sent: says nothing of the endpoint
        else:
            self._breaker.succeeded()  # it answered, however badly: it is up
        what = f"{outcome.value}: {redact(detail)}"
        if what != self._last_failure:  # once per kind of failure, not per alert
            log.warning("LLM classification failed (%s); the rules decide instead", what)
            self._last_failure = what


def _breaker_changed(state: BreakerState) -> None:
    metrics.BREAKER_STATE.labels("llm").set(state)
    if state is BreakerState.OPEN:
        log.warning("LLM failed %d times in a row: not asked for %g s", BREAKER_FAILURES, BREAKER_COOLDOWN_S)


def parse_answer(raw: bytes) -> Verdict:
    """The `classify_alert` tool call's arguments of a chat-completions answer, validated."""
    try:
        answer: Any = orjson.loads(raw)
        calls = answer["choices"][0]["message"]["tool_calls"]
        call = next(c for c in calls if c["function"]["name"] == TOOL)
        arguments = call["function"]["arguments"]
        args = orjson.loads(arguments) if isinstance(arguments, str | bytes) else arguments
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, StopIteration) as exc:
        raise _Failed(Outcome.MALFORMED, f"no {TOOL} tool call with JSON arguments ({type(exc).__name__})") from None
    try:
        return Verdict.model_validate(args)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        raise _Failed(Outcome.INVALID, f"{TOOL} arguments: {where}: {err['msg']}") from None
