"""Who may call what: web.auth's rule as a table, then the whole matrix through HTTP on real web nodes.

Five web nodes (the bridge and the reads, no partitions), one per configuration: no tokens, API_TOKEN only,
READ_TOKEN only, both, API_TOKEN with WEBHOOK_SECRET. Each endpoint kind (write, read, open) is called with
no header, a wrong token, each token, a non-UTF-8 header and good and bad signatures.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from app.settings import load_settings
from app.topics import end_offsets
from tests.agents.streams import read_topic
from tests.fixtures import Worker, eventually, free_port, unique
from tests.web.test_alertmanager_api import prometheus_alert
from tests.web.test_webhook import am_alert, webhook
from web.auth import (
    SIGNATURE_HEADER,
    Access,
    Keys,
    access,
    decide,
    is_loopback,
    open_access_warnings,
    sign,
)

API = "api-" + secrets.token_hex(16)
READ = "read-" + secrets.token_hex(16)
HOOK = "hook-" + secrets.token_hex(16)
WRONG = "wrong-" + secrets.token_hex(16)


# ---- the rule, as pure decisions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "route", "need"),
    [
        ("GET", "/healthz", Access.OPEN),
        ("GET", "/readyz", Access.OPEN),
        ("GET", "/metrics", Access.OPEN),
        ("GET", "/history", Access.READ),
        ("HEAD", "/history", Access.READ),
        ("GET", "/alerts/{fingerprint}/history", Access.READ),
        ("GET", "/openapi.json", Access.READ),
        ("GET", "/events", Access.READ),
        ("GET", "/", Access.OPEN),  # the dashboard's shell and files hold no data; the page reads with the token
        ("GET", "/static/{name}", Access.OPEN),
        ("GET", "/enrichment/mode", Access.READ),
        ("PUT", "/enrichment/mode", Access.WRITE),
        ("POST", "/webhook", Access.WRITE),
        ("post", "/api/v2/alerts", Access.WRITE),
        ("DELETE", "/anything", Access.WRITE),
    ],
)
def test_a_route_is_open_by_the_table_else_read_or_write_by_method(method: str, route: str, need: Access) -> None:
    assert access(method, route) is need


def _headers(**values: str) -> CIMultiDict[str]:
    names = {"auth": "Authorization", "sig": SIGNATURE_HEADER}
    return CIMultiDict({names[k]: v for k, v in values.items()})


BODY = b'{"alerts": []}'
BOTH = Keys(API.encode(), READ.encode(), HOOK.encode())


@pytest.mark.parametrize(
    ("keys", "need", "headers", "signable", "passes"),
    [
        (Keys(), Access.WRITE, _headers(), False, True),
        (Keys(webhook=HOOK.encode()), Access.WRITE, _headers(), True, True),  # WEBHOOK_SECRET alone closes nothing
        (Keys(read=READ.encode()), Access.WRITE, _headers(), False, True),
        (Keys(write=API.encode()), Access.READ, _headers(), False, True),
        (BOTH, Access.WRITE, _headers(auth=f"Bearer {API}"), False, True),
        (BOTH, Access.WRITE, _headers(auth=f"bearer   {API} "), False, True),  # the scheme is case-insensitive
        (BOTH, Access.WRITE, _headers(auth=API), False, False),
        (BOTH, Access.WRITE, _headers(auth=f"Basic {API}"), False, False),
        (BOTH, Access.WRITE, _headers(auth=f"Bearer {READ}"), False, False),
        (BOTH, Access.READ, _headers(auth=f"Bearer {READ}"), False, True),
        (BOTH, Access.READ, _headers(auth=f"Bearer {API}"), False, True),
        (BOTH, Access.READ, _headers(auth=f"Bearer {API}x"), False, False),
        (BOTH, Access.READ, _headers(auth="Bearer \udcff\udcfe"), False, False),
        (BOTH, Access.READ, _headers(auth="Bearer ünïcödé"), False, False),
        (BOTH, Access.WRITE, _headers(sig=sign(HOOK.encode(), BODY)), True, True),
        (BOTH, Access.WRITE, _headers(sig=sign(HOOK.encode(), BODY).upper().replace("SHA256=", "sha256=")), True, True),
        (BOTH, Access.WRITE, _headers(sig=sign(HOOK.encode(), BODY)), False, False),  # only on signed routes
        (BOTH, Access.READ, _headers(sig=sign(HOOK.encode(), BODY)), True, False),  # never for reads
        (BOTH, Access.WRITE, _headers(sig=sign(HOOK.encode(), BODY + b" ")), True, False),
        (BOTH, Access.WRITE, _headers(sig=sign(WRONG.encode(), BODY)), True, False),
        (BOTH, Access.WRITE, _headers(sig=sign(HOOK.encode(), BODY).removeprefix("sha256=")), True, False),
        (BOTH, Access.WRITE, _headers(sig="sha256=\udcff"), True, False),
        (BOTH, Access.WRITE, _headers(sig=sign(WRONG.encode(), BODY), auth=f"Bearer {API}"), True, True),
        (BOTH, Access.WRITE, _headers(sig=sign(HOOK.encode(), BODY), auth=f"Bearer {WRONG}"), True, True),
        (Keys(write=API.encode()), Access.WRITE, _headers(sig=sign(HOOK.encode(), BODY)), True, False),
    ],
)
def test_decide(keys: Keys, need: Access, headers: CIMultiDict[str], signable: bool, passes: bool) -> None:
    denied = decide(keys, need, headers, signable=signable, body=BODY)
    assert (denied is None) is passes, denied
    if denied is not None:
        assert denied.challenge.startswith('Bearer realm="alert-history"')
        for secret in (API, READ, HOOK, WRONG):
            assert secret not in denied.message


def test_401_messages_name_what_is_missing() -> None:
    def why(need: Access, **headers: str) -> str:
        denied = decide(BOTH, need, _headers(**headers), signable=True, body=BODY)
        assert denied is not None
        return denied.message

    assert why(Access.READ) == (
        "Authorization: Bearer <ALERT_HISTORY_READ_TOKEN or ALERT_HISTORY_API_TOKEN>: "
        "the Authorization header is missing"
    )
    assert why(Access.WRITE).endswith("X-Alert-History-Signature: sha256=<hex HMAC-SHA256 of the body with "
                                      "ALERT_HISTORY_WEBHOOK_SECRET>: the Authorization header is missing")  # fmt: skip
    assert why(Access.WRITE, auth=f"Bearer {READ}").endswith("a read token does not allow writes")
    assert why(Access.WRITE, auth=f"Bearer {WRONG}").endswith("the token does not match")
    assert why(Access.READ, auth="Bearer \udcff").endswith("the Authorization header is not valid UTF-8")
    assert why(Access.READ, auth=f"Token {READ}").endswith("the Authorization header is not a Bearer token")
    # A sender that signs hears about its signature, not about the header it never meant to send.
    assert why(Access.WRITE, sig="sha256=00").endswith(": X-Alert-History-Signature does not match the body")
    assert why(Access.WRITE, sig="sha1=00", auth=f"Bearer {WRONG}").endswith(
        ": X-Alert-History-Signature must be sha256=<hex digest>; the token does not match"
    )


def test_start_warnings_say_when_writes_or_reads_are_open() -> None:
    warnings = open_access_warnings(load_settings())
    assert len(warnings) == 1 and "ALERT_HISTORY_API_TOKEN is not set" in warnings[0]
    warnings = open_access_warnings(load_settings(web_host="0.0.0.0", webhook_secret=HOOK))
    assert len(warnings) == 2
    assert "WEBHOOK_SECRET does not close them" in warnings[0]
    assert "ALERT_HISTORY_READ_TOKEN is not set" in warnings[1] and "0.0.0.0" in warnings[1]
    assert open_access_warnings(load_settings(api_token=API, web_host="::1")) == []
    assert open_access_warnings(load_settings(api_token=API, read_token=READ, web_host="0.0.0.0")) == []
    assert open_access_warnings(load_settings(web_enabled=False)) == []
    assert [is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "0.0.0.0", "::", "h")] == [
        True, True, True, True, True, False, False, False,
    ]  # fmt: skip


# ---- the matrix, through HTTP ---------------------------------------------------------------------------------

CONFIGS: dict[str, dict[str, str]] = {
    "open": {},
    "api": {"api_token": API},
    "read": {"read_token": READ},
    "both": {"api_token": API, "read_token": READ},
    "signed": {"api_token": API, "webhook_secret": HOOK},
}


@pytest.fixture(scope="module")
async def nodes(make_worker: Callable[..., Worker]) -> AsyncIterator[dict[str, Worker]]:
    started = {name: make_worker(pipeline_enabled=False, **settings) for name, settings in CONFIGS.items()}
    await asyncio.gather(*(node.wait_ready(partitions=False) for node in started.values()))
    yield started
    for node in started.values():
        node.stop()


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes = b""


def _bodies() -> dict[str, bytes]:
    run = unique("Auth")
    return {
        "/webhook": orjson.dumps(webhook([am_alert({"alertname": "AuthMatrix", "run": run})])),
        "/api/v2/alerts": orjson.dumps([prometheus_alert({"alertname": "AuthMatrix", "run": run}, timedelta(hours=1))]),
    }


BODIES = _bodies()
WRITE_WEBHOOK = Call("POST", "/webhook", BODIES["/webhook"])
WRITE_V2 = Call("POST", "/api/v2/alerts", BODIES["/api/v2/alerts"])
READS = [Call("GET", "/history?limit=1"), Call("GET", "/api/v2/alerts"), Call("GET", "/openapi.json")]
OPENS = [Call("GET", "/healthz"), Call("GET", "/metrics"), Call("GET", "/readyz")]
OPENS += [Call("GET", "/"), Call("GET", "/static/app.js")]  # the dashboard's shell and files: no data in them
OK = {"/webhook": 202}

# Credential kinds, each the request headers for a call.
NON_UTF8 = b"Bearer \xff\xfe-not-utf-8"


def credentials(kind: str, body: bytes) -> dict[str, str]:
    return {
        "none": {},
        "wrong": {"Authorization": f"Bearer {WRONG}"},
        "api": {"Authorization": f"Bearer {API}"},
        "read": {"Authorization": f"Bearer {READ}"},
        "good-sig": {SIGNATURE_HEADER: sign(HOOK.encode(), body)},
        "bad-sig": {SIGNATURE_HEADER: sign(WRONG.encode(), body)},
    }[kind]


# Which credentials pass, per configuration and kind of call (everything else gets a 401).
PASSES: dict[str, dict[str, set[str]]] = {
    "open": {"write": {"none", "wrong", "api", "read", "non-utf8", "good-sig", "bad-sig"},
             "read": {"none", "wrong", "api", "read", "non-utf8", "good-sig", "bad-sig"}},
    "api": {"write": {"api"}, "read": {"none", "wrong", "api", "read", "non-utf8", "good-sig", "bad-sig"}},
    "read": {"write": {"none", "wrong", "api", "read", "non-utf8", "good-sig", "bad-sig"}, "read": {"read"}},
    "both": {"write": {"api"}, "read": {"api", "read"}},
    "signed": {"write": {"api"}, "webhook": {"api", "good-sig"},
               "read": {"none", "wrong", "api", "read", "non-utf8", "good-sig", "bad-sig"}},
}  # fmt: skip
KINDS = ("none", "wrong", "api", "read", "non-utf8", "good-sig", "bad-sig")


async def raw_request(url: str, call: Call, header: bytes) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request written byte by byte: a client library would refuse the non-UTF-8 header."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"{call.method} {call.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode()
    if call.body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(call.body)}\r\n".encode()
    writer.write(head + b"Authorization: " + header + b"\r\n\r\n" + call.body)
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    lines, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = lines.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return int(status_line.split()[1]), headers, body


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


async def call_with(
    http: aiohttp.ClientSession, node: Worker, call: Call, kind: str
) -> tuple[int, Any, dict[str, str]]:
    if kind == "non-utf8":
        status, headers, body = await raw_request(node.url, call, NON_UTF8)
        return status, body, headers
    headers = credentials(kind, call.body)
    if call.body:
        headers["Content-Type"] = "application/json"
    async with http.request(call.method, node.url + call.path, data=call.body or None, headers=headers) as r:
        return r.status, await r.read(), dict(r.headers)


@pytest.mark.parametrize("config", CONFIGS)
async def test_matrix(nodes: dict[str, Worker], http: aiohttp.ClientSession, config: str) -> None:
    node = nodes[config]
    calls = [(WRITE_WEBHOOK, "webhook"), (WRITE_V2, "write")] + [(c, "read") for c in READS]
    seen, wanted = {}, {}
    for call, kind_of_call in calls:
        passing = PASSES[config].get(kind_of_call, PASSES[config]["write" if kind_of_call == "webhook" else "read"])
        for kind in KINDS:
            status, body, headers = await call_with(http, node, call, kind)
            key = f"{call.method} {call.path.split('?')[0]} with {kind}"
            seen[key] = status
            wanted[key] = OK.get(call.path, 200) if kind in passing else 401
            if status == 401:
                error = orjson.loads(body)["error"]
                assert "Authorization" in error, error
                assert headers.get("WWW-Authenticate", headers.get("www-authenticate", "")).startswith("Bearer")
                for secret in (API, READ, HOOK, WRONG, "not-utf-8"):
                    assert secret not in error
    assert seen == wanted


@pytest.mark.parametrize("config", CONFIGS)
async def test_open_routes_stay_open_and_readyz_details_are_for_readers(
    nodes: dict[str, Worker], http: aiohttp.ClientSession, config: str
) -> None:
    node = nodes[config]
    for call in OPENS:
        for kind in KINDS:
            status, _, _ = await call_with(http, node, call, kind)
            assert status == 200, (call, kind)
    readers = {"read", "api"} if "api_token" in CONFIGS[config] else {"read"}
    for kind in KINDS:
        status, body, _ = await call_with(http, node, Call("GET", "/readyz"), kind)
        ready = orjson.loads(body)
        shown = kind in readers if "read_token" in CONFIGS[config] else True
        assert ready["ready"] is True and ("checks" in ready) is shown, (kind, ready)
        if shown:
            assert ready["checks"]["kafka"] == "ok" and ready["checks"]["role"].startswith("web node")


async def test_writes_open_without_api_token_are_warned_once_at_start(nodes: dict[str, Worker]) -> None:
    lines = nodes["open"].log_path.read_text().splitlines()
    assert len([line for line in lines if "ALERT_HISTORY_API_TOKEN is not set" in line]) == 1
    assert not any(
        "ALERT_HISTORY_API_TOKEN is not set" in line for line in nodes["api"].log_path.read_text().splitlines()
    )


# ---- the README's recipes, run for real ----------------------------------------------------------------------


async def run(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_readme_openssl_signature_is_accepted(nodes: dict[str, Worker], http: aiohttp.ClientSession) -> None:
    body = b'{"version":"4","status":"firing","receiver":"x","alerts":[{"labels":{"alertname":"Signed"}}]}'
    code, out, err = await run("openssl", "dgst", "-sha256", "-hmac", HOOK, "-r", stdin=body)
    assert code == 0, err
    signature = "sha256=" + out.split(" ")[0]
    assert signature == sign(HOOK.encode(), body)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
    async with http.post(f"{nodes['signed'].url}/webhook", data=body, headers=headers) as r:
        assert r.status == 202, await r.text()


async def test_amtool_reads_with_the_read_token_through_its_http_config(
    nodes: dict[str, Worker], tmp_path: Path
) -> None:
    url = f"--alertmanager.url={nodes['both'].url}"
    code, _, err = await run("amtool", "alert", "query", url)
    assert code != 0 and "401" in err, err
    (tmp_path / "token").write_text(READ)
    (tmp_path / "http.yml").write_text(f"authorization:\n  credentials_file: {tmp_path / 'token'}\n")
    code, _, err = await run("amtool", "alert", "query", url, f"--http.config.file={tmp_path / 'http.yml'}")
    assert code == 0, err


async def test_alertmanager_delivers_with_the_readme_http_config(nodes: dict[str, Worker], tmp_path: Path) -> None:
    """A real Alertmanager, configured as the README says, gets its webhook through a node that needs the token."""
    node = nodes["api"]
    am_port = free_port()
    (tmp_path / "token").write_text(API)
    (tmp_path / "alertmanager.yml").write_text(
        f"""
route: {{receiver: alert-history, group_wait: 0s, group_interval: 1s}}
receivers:
  - name: alert-history
    webhook_configs:
      - url: {node.url}/webhook
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            credentials_file: {tmp_path / "token"}
"""
    )
    start = await end_offsets(node.endpoints.kafka_brokers, node.topic)
    log = (tmp_path / "alertmanager.log").open("wb")
    am = await asyncio.create_subprocess_exec(
        "prometheus-alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=", stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    run_id = unique("AM")
    try:

        async def posted() -> bool:
            alert = [{"labels": {"alertname": "ViaAlertmanager", "run": run_id}}]
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.post(f"http://127.0.0.1:{am_port}/api/v2/alerts", json=alert) as r,
                ):
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(posted, what="Alertmanager to take the alert")

        async def delivered() -> bool:
            messages = await read_topic(node.endpoints.kafka_brokers, node.topic, start)
            return any(run_id.encode() in m.value for m in messages)

        await eventually(delivered, timeout=30, what="Alertmanager's webhook on the node's topic")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{(tmp_path / 'alertmanager.log').read_text()[-3000:]}") from None
    finally:
        am.terminate()
        await asyncio.wait_for(am.wait(), 10)
        log.close()
