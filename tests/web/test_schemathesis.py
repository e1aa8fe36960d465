"""schemathesis against /openapi.json: generated requests to every operation of real workers (on real Kafka,
PostgreSQL and Redis), open, with tokens and sending them, and with tokens but no credentials. No 5xx, and every
response (status, content type, headers, body) as the document says. Fixed seed and a bounded number of examples
per operation, so a run is reproducible and takes a minute or two."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from app.fingerprint import fingerprint
from tests.fixtures import Worker, eventually
from web import models

SEED = 20261203
EXAMPLES = 25  # per operation
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,negative_data_rejection"
)
ST = Path(sys.executable).parent / "st"
CONFIG = Path(__file__).with_name("schemathesis.toml")


async def schemathesis(worker: Worker, tmp_path: Path, name: str, headers: dict[str, str], *extra: str) -> str:
    """`st run` on the worker's document (read with its read token); its output, after asserting it passed."""
    async with aiohttp.ClientSession(headers=worker.auth) as http:
        # The alert of the document's examples (its timeline's fingerprint), so they reach stored data.
        alert = {"labels": models.EXAMPLE_LABELS, "annotations": {"summary": "example"}}
        async with http.post(f"{worker.url}/api/v2/alerts", json=[alert], headers=_write_auth(worker)) as r:
            assert r.status == 200, await r.text()
        example = f"{worker.url}/alerts/{fingerprint(models.EXAMPLE_LABELS)}/history"
        await eventually(lambda: _status(http, example, 200), what="the example alert stored")
        async with http.get(f"{worker.url}/openapi.json") as r:
            assert r.status == 200
            doc = await r.json()
    spec = tmp_path / f"openapi-{name}.json"
    spec.write_text(json.dumps(doc))
    args = [
        str(spec), "--url", worker.url, "--checks", CHECKS, "--max-examples", str(EXAMPLES), "--seed", str(SEED),
        "--generation-database", "none", "--request-timeout", "20", "--workers", "1", "--no-color",
        "--suppress-health-check", "all", "--output-truncate", "false",
        *(a for k, v in headers.items() for a in ("-H", f"{k}: {v}")), *extra,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        str(ST), "--config-file", str(CONFIG), "run", *args,
        cwd=tmp_path,  # its cache of crashes (.schemathesis/) goes there, not into the checkout
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    text = out.decode(errors="replace")
    (tmp_path / f"schemathesis-{name}.log").write_text(text)
    assert proc.returncode == 0, f"schemathesis found problems ({name}):\n{text[-20000:]}"
    tested = re.search(r"Tested: (\d+)", text)
    cases = re.search(r"(\d+) generated, (\d+) passed", text)
    assert tested and cases, text[-3000:]
    operations = sum(len(ops) for ops in doc["paths"].values()) - sum(a == "--exclude-path" for a in extra)
    assert int(tested[1]) == operations, f"{tested[1]} operations tested, {operations} documented"
    assert int(cases[1]) >= operations * EXAMPLES, f"only {cases[1]} cases generated"  # nothing vacuous
    print(f"\nschemathesis, {name}: {tested[1]} operations, {cases[1]} cases, {cases[2]} passed")
    return text


def _write_auth(worker: Worker) -> dict[str, str]:
    token = worker.env.get("ALERT_HISTORY_API_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _status(http: aiohttp.ClientSession, url: str, status: int) -> bool:
    async with http.get(url) as r:
        return r.status == status


@pytest.fixture(scope="module")
async def open_worker(make_worker: Callable[..., Worker]) -> Worker:
    w = make_worker()
    await w.wait_ready()
    return w


@pytest.fixture(scope="module")
async def tokened_worker(make_worker: Callable[..., Worker]) -> Worker:
    w = make_worker(api_token="api-" + secrets.token_hex(16), read_token="read-" + secrets.token_hex(16))
    await w.wait_ready()
    return w


# /events streams until the client leaves: with credentials its 200 would hold every case to the request timeout.
# Its 200 is checked in test_openapi.py (the frames' data as Event); here it runs where it answers at once.
STREAMING = ("--exclude-path", "/events")


@pytest.mark.slow
async def test_open_service(open_worker: Worker, tmp_path: Path) -> None:
    await schemathesis(open_worker, tmp_path, "open", {}, *STREAMING)


@pytest.mark.slow
async def test_service_with_tokens_sending_the_api_token(tokened_worker: Worker, tmp_path: Path) -> None:
    token = tokened_worker.env["ALERT_HISTORY_API_TOKEN"]
    await schemathesis(tokened_worker, tmp_path, "tokens", {"Authorization": f"Bearer {token}"}, *STREAMING)


@pytest.mark.slow
async def test_service_with_tokens_sending_the_read_token(tokened_worker: Worker, tmp_path: Path) -> None:
    """Reads pass, writes are 401s (a read token does not allow writes): both as documented."""
    token = tokened_worker.env["ALERT_HISTORY_READ_TOKEN"]
    await schemathesis(tokened_worker, tmp_path, "read-token", {"Authorization": f"Bearer {token}"}, *STREAMING)


@pytest.mark.slow
async def test_service_with_tokens_and_no_credentials(tokened_worker: Worker, tmp_path: Path) -> None:
    await schemathesis(tokened_worker, tmp_path, "no-credentials", {})
