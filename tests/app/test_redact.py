"""No secret leaks: app.redact on its own, then a worker with every secret set, provoked into its errors.

In the spirit of Alertmanager's RedactURL test, widened to the whole service: none of the secret strings may
appear in any response (body or header), in the worker's log, or on the CLI's stderr.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson
import pytest

from app import redact
from app.logs import RedactFilter
from app.retry import RetriesExhausted, retry
from app.services import Endpoints
from tests.fixtures import REPO, Worker, free_port, unique
from tests.web.test_auth import Call, raw_request
from tests.web.test_webhook import am_alert, webhook
from web.auth import SIGNATURE_HEADER, sign

# ---- the helper ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://history:pa55word@db:5432/h", "postgresql://history:***@db:5432/h"),
        ("redis://:pa55word@redis:6379/0 refused", "redis://:***@redis:6379/0 refused"),
        ("connect to rediss://default:p%40ss@r failed", "connect to rediss://default:***@r failed"),
        ("dsn host=db user=h password=pa55word dbname=h", "dsn host=db user=h password=*** dbname=h"),
        ("postgresql://db/h?sslpassword=pa55word&x=1", "postgresql://db/h?sslpassword=***&x=1"),
        ("postgresql://history@db:5432/h", "postgresql://history@db:5432/h"),  # no password: nothing to hide
        ("http://host:8080/path", "http://host:8080/path"),
    ],
)
def test_redact_masks_url_passwords(text: str, shown: str) -> None:
    assert redact.redact(text) == shown


def test_remembered_values_are_masked_anywhere_in_any_form() -> None:
    password = "p@ss/" + secrets.token_hex(6)
    url = f"postgresql://history:{quote(password, safe='')}@db/h"
    assert set(redact.url_secrets(url)) == {quote(password, safe=""), password}
    assert redact.url_secrets("postgresql://history@db/h") == [] and redact.url_secrets(None) == []
    token = "tok-" + secrets.token_hex(8)
    redact.remember([token, *redact.url_secrets(url), "abc"])  # "abc": too short to be worth masking
    assert redact.redact(f"auth {token!r} failed for {password}; abc") == "auth '***' failed for ***; abc"
    assert redact.describe(ConnectionError(f"to {url}")) == "ConnectionError: to postgresql://history:***@db/h"
    assert redact.describe(TimeoutError()) == "TimeoutError"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_log_filter_masks_messages_arguments_and_tracebacks(fmt: str) -> None:
    token = "filter-" + secrets.token_hex(8)
    redact.remember([token])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter())
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger(f"tests.redact.{fmt}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token %s and %r", token, "redis://:pw-" + token[:6] + "x@r:1")
        try:
            raise ConnectionError(f"refused: postgresql://u:{token}@db/h")
        except ConnectionError:
            logger.exception("connect failed")
        logger.error("bad args %s %s", token)  # a malformed call: reported by logging, never raised into us
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert token not in out and "pw-" not in out, out
    assert "ConnectionError" in out and "token *** and" in out
    if fmt == "json":
        records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert "postgresql://u:***@db/h" in records[1]["exc_info"]


async def test_the_retry_helper_logs_and_raises_redacted(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql://history:retry-pa55word@127.0.0.1:1/h"

    async def refused() -> None:
        raise ConnectionRefusedError(f"connect to {url} refused")

    with pytest.raises(RetriesExhausted) as raised:
        await retry("connect", refused, retryable=lambda e: True, deadline_s=0.05, first_delay_s=0.01)
    assert "retry-pa55word" not in str(raised.value) and "ConnectionRefusedError" in str(raised.value)
    warnings = [r.getMessage() for r in caplog.records if r.name == "app.retry"]
    assert warnings and not any("retry-pa55word" in w for w in warnings), warnings


# ---- the whole service -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def secrets_db(endpoints: Endpoints) -> AsyncIterator[tuple[str, str]]:
    """A role with a password owning a database of its own: (its URL, the password). The session's PostgreSQL
    trusts every local connection, so the password is never checked; it only has to stay out of sight."""
    role, password = f"leak_{secrets.token_hex(4)}", f"pg@{secrets.token_hex(10)}"
    admin = await asyncpg.connect(endpoints.database_url)
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    await admin.execute(f"CREATE DATABASE {role} OWNER {role}")
    base = endpoints.database_url.split("@", 1)[1].split("/", 1)[0]
    try:
        yield f"postgresql://{role}:{quote(password, safe='')}@{base}/{role}", password
    finally:
        await admin.execute(f"DROP DATABASE {role} WITH (FORCE)")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


def all_secrets_env(database_url: str) -> tuple[dict[str, str], list[str]]:
    """Every secret setting, set: (the settings, every string that must never be seen)."""
    values = {
        "api_token": "api-" + secrets.token_hex(16),
        "read_token": "read-" + secrets.token_hex(16),
        "webhook_secret": "hook-" + secrets.token_hex(16),
        "llm_api_key": "sk-" + secrets.token_hex(16),
    }
    llm_password = "llm-" + secrets.token_hex(8)
    redis_password = "redis-" + secrets.token_hex(8)
    settings = {
        **values,
        "database_url": database_url,
        "llm_url": f"http://llm-user:{llm_password}@127.0.0.1:{free_port()}/v1",
        "llm_model": "m",  # required with llm_url; the enrich agent then asks this LLM, which does not answer
        "redis_url": f"redis://:{redis_password}@127.0.0.1:{free_port()}/0",  # nothing listens there
        "log_level": "DEBUG",
    }
    return settings, [*values.values(), llm_password, redis_password]


async def provoke(http: aiohttp.ClientSession, worker: Worker, s: dict[str, str]) -> list[str]:
    """Every refusal and failure a caller can cause; returns each response's status line, headers and body."""
    body = orjson.dumps(webhook([am_alert({"alertname": "Leak", "run": unique()})]))
    json_type = {"Content-Type": "application/json"}
    wrong = "Bearer " + s["api_token"][::-1]
    calls: list[tuple[str, str, dict[str, str], bytes]] = [
        ("POST", "/webhook", json_type, body),
        ("POST", "/webhook", {**json_type, "Authorization": wrong}, body),
        ("POST", "/webhook", {**json_type, "Authorization": f"Bearer {s['read_token']}"}, body),
        ("POST", "/webhook", {**json_type, SIGNATURE_HEADER: sign(s["api_token"].encode(), body)}, body),
        ("POST", "/webhook", {**json_type, SIGNATURE_HEADER: sign(s["webhook_secret"].encode(), body)}, body),
        ("POST", "/webhook", {**json_type, "Authorization": f"Bearer {s['api_token']}"}, b'{"alerts": 5}'),
        ("PUT", "/api/v2/alerts", {"Authorization": f"Bearer {s['api_token']}"}, b""),  # no such method: 405
        ("GET", "/history", {}, b""),
        ("GET", "/history", {"Authorization": wrong}, b""),
        ("GET", "/history?since=never", {"Authorization": f"Bearer {s['read_token']}"}, b""),
        ("GET", "/readyz", {}, b""),
        ("GET", "/readyz", {"Authorization": f"Bearer {s['read_token']}"}, b""),
        ("GET", "/metrics", {}, b""),
    ]
    seen = []
    for method, path, headers, data in calls:
        async with http.request(method, worker.url + path, headers=headers, data=data or None) as r:
            seen.append(f"{r.status} {method} {path}\n{dict(r.headers)}\n{await r.text()}")
    for call in (Call("GET", "/history"), Call("POST", "/webhook", body)):
        status, headers, raw = await raw_request(worker.url, call, b"Bearer \xff" + b"\xfe" * 8)
        seen.append(f"{status} {call.method} {call.path} (non-UTF-8)\n{headers}\n{raw.decode(errors='replace')}")
    return seen


async def test_no_secret_leaks_from_a_worker_with_every_secret_set(
    make_worker: Callable[..., Worker], http: aiohttp.ClientSession, secrets_db: tuple[str, str]
) -> None:
    database_url, pg_password = secrets_db
    settings, hidden = all_secrets_env(database_url)
    hidden += [pg_password, quote(pg_password, safe="")]
    worker = make_worker(**settings)
    await worker.wait_ready()
    seen = await provoke(http, worker, settings)
    worker.stop()
    log = worker.log_path.read_text(errors="replace")

    statuses = [int(s.split(" ", 1)[0]) for s in seen]
    assert statuses == [401, 401, 401, 401, 202, 422, 405, 401, 401, 400, 200, 200, 200, 401, 401], seen
    readyz = orjson.loads(seen[11].rsplit("\n", 1)[1])
    assert readyz["checks"]["redis"] == "unreachable (degraded)" and "checks" not in seen[10]
    assert "Redis unreachable" in log  # the provoked failure did reach the log
    for secret in hidden:
        for text in seen:
            assert secret not in text, f"a secret in a response:\n{text}"
        assert secret not in log, "a secret in the worker's log"


def run_cli(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_HISTORY_")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", command],
        cwd=REPO,
        env={**clean, **{f"ALERT_HISTORY_{k.upper()}": v for k, v in env.items()}},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_no_secret_leaks_on_the_cli_when_a_setting_is_bad_or_postgres_unreachable(
    endpoints: Endpoints, secrets_db: tuple[str, str]
) -> None:
    database_url, pg_password = secrets_db
    settings, hidden = all_secrets_env(database_url)
    hidden += [pg_password, quote(pg_password, safe="")]
    settings["kafka_brokers"] = endpoints.kafka_brokers
    encoded = quote(pg_password, safe="")
    host = database_url.rsplit("@", 1)[1].split("/", 1)[0]
    cases = [
        # A password PostgreSQL would refuse cannot be had (the session's PostgreSQL trusts everyone): bad
        # settings carrying it instead, and a server that is not there.
        ({"database_url": database_url.replace("postgresql://", "mysql://")}, 2, "ALERT_HISTORY_DATABASE_URL"),
        ({"database_url": database_url.replace(host, "db:port")}, 2, "ALERT_HISTORY_DATABASE_URL"),
        ({"redis_url": f"http://:{encoded}@r:1"}, 2, "ALERT_HISTORY_REDIS_URL"),
        ({"api_token": settings["api_token"] + " x"}, 2, "ALERT_HISTORY_API_TOKEN"),
        ({"webhook_secret": settings["webhook_secret"][:12]}, 2, "ALERT_HISTORY_WEBHOOK_SECRET"),
        ({"database_url": f"postgresql://h:{encoded}@127.0.0.1:{free_port()}/h"}, 1, "could not prepare"),
    ]
    results = await asyncio.gather(*(asyncio.to_thread(run_cli, "worker", {**settings, **bad}) for bad, _, _ in cases))
    for (bad, code, says), done in zip(cases, results, strict=True):
        assert done.returncode == code and says in done.stderr, (bad, done.returncode, done.stderr)
        for secret in [*hidden, settings["webhook_secret"][:12]]:
            assert secret not in done.stderr + done.stdout, (bad, done.stderr)
