"""Hostile reads on every read endpoint: each bad parameter is a 4xx with a JSON error naming it, never a 5xx;
a catastrophic regex never stalls the event loop."""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from app.matchers import MAX_FILTER_LEN, MAX_MATCHERS
from tests.fixtures import Worker, eventually, unique
from tests.web.test_webhook import am_alert, webhook

READS = ("/history", "/report", "/api/v2/alerts")
ALL_READS = (*READS, "/api/v2/status", "/alerts/0123456789abcdef/history")


def q(value: str) -> str:
    """A query-string value percent-encoded as UTF-8."""
    return quote(value, safe="")


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def get(http: aiohttp.ClientSession, worker: Worker, path: str, query: str) -> tuple[int, Any]:
    """GET with the query string sent exactly as given (already encoded)."""
    url = URL(f"{worker.url}{path}?{query}" if query else f"{worker.url}{path}", encoded=True)
    async with http.get(url) as r:
        body = await r.json(content_type=None) if r.content_type == "application/json" else await r.text()
        return r.status, body


def nested(depth: int) -> str:
    return "(" * depth + "a" + ")" * depth


# (paths, raw query string, the status, what the error must name)
HOSTILE: list[tuple[tuple[str, ...], str, int, str]] = [
    # Regexes Python's re accepted and PostgreSQL (which runs them) or RE2 (Alertmanager's dialect) rejects.
    (READS, "filter=" + q('job=~"x{300}"'), 400, "filter"),
    (READS, "filter=" + q('job=~"a++"'), 400, "filter"),
    (READS, "filter=" + q('job=~"(?i:a)"'), 400, "filter"),
    (READS, "filter=" + q('job=~"[[:foo:]]"'), 400, "filter"),
    (READS, "filter=" + q('job=~"(?P<n>x)"'), 400, "filter"),
    (READS, "filter=" + q('job=~"[a-"'), 400, "filter"),
    (READS, "filter=" + q('job!~"((a{1,100}){1,100}){1,100}"'), 400, "filter"),  # PostgreSQL: too complex
    (READS, "filter=" + q('job=~"(a)\\\\1"'), 400, "filter"),  # a backreference: not RE2
    (READS, "filter=" + q('job=~"x\\\\b"'), 400, "filter"),  # \b: read differently by the two engines
    (READS, "filter=" + q('a="b"') + "&filter=" + q('job=~"ok"') + "&filter=" + q('c=~"x{256}"'), 400, "c=~"),
    # NUL and invalid UTF-8, in any parameter, known or not, value or name.
    (ALL_READS, "filter=" + q('a="x') + "%00" + q('"'), 400, "NUL"),
    (ALL_READS, "since=now%00", 400, "since"),
    (ALL_READS, "whatever=%00", 400, "whatever"),
    (ALL_READS, "filter=%FF", 400, "filter"),
    (ALL_READS, "since=%C3", 400, "since"),
    (ALL_READS, "filter=" + q('a="') + "%ED%A0%80" + q('"'), 400, "UTF-8"),  # an encoded surrogate
    (ALL_READS, "%FF=1", 400, "parameter name"),
    # Cursors: past 64 bits, or a time out of range, or not ours.
    (("/history",), "cursor=" + cursor("k0.99999999999999999999"), 400, "cursor"),
    (("/history",), "cursor=" + cursor(f"k0.{2**63}"), 400, "cursor"),
    (("/history",), "cursor=" + cursor("k-1.-5"), 400, "cursor"),
    (("/history",), "cursor=" + cursor("k999999999999999999.1"), 400, "cursor"),
    (("/history",), "cursor=" + cursor("k-999999999999999999.1"), 400, "cursor"),
    (("/history",), "cursor=" + cursor("k1_000.1"), 400, "cursor"),
    (("/history",), "cursor=" + q("é"), 400, "cursor"),
    (("/history",), "cursor=%00", 400, "cursor"),
    # Times out of Python's range (relative and absolute), or not times at all.
    (("/history", "/report"), "since=-999999d", 400, "since"),
    (("/history", "/report"), "since=-99999999999w", 400, "since"),
    (("/history", "/report"), "until=" + "9" * 5000 + "d", 400, "until"),
    (("/history", "/report"), "since=" + q("0001-01-01T00:00:00+01:00"), 400, "since"),
    (("/history", "/report"), "until=" + q("9999-12-31T23:00:00-02:00"), 400, "until"),
    (("/history", "/report"), "since=" + q("+275760-09-13T00:00:00Z"), 400, "since"),
    (("/history", "/report"), "since=" + q("2026-01-01T00:00:00"), 400, "time zone"),
    (("/history", "/report"), "since=" + q("\uff11\uff12h"), 400, "since"),  # fullwidth digits
    (("/history", "/report"), "since=-1h&since=-2h", 400, "since"),
    (
        ("/history", "/report"),
        "since=" + q("2026-01-02T00:00:00Z") + "&until=" + q("2026-01-01T00:00:00Z"),
        400,
        "since",
    ),
    # Limits and enumerations.
    (READS, "&".join(["filter=" + q('a="b"')] * (MAX_MATCHERS + 1)), 400, "filter"),
    (READS, "filter=" + q("{" + ",".join(f'l{i}="v"' for i in range(MAX_MATCHERS + 1)) + "}"), 400, "filter"),
    (READS, "filter=" + q('a="' + "x" * (MAX_FILTER_LEN + 1) + '"'), 400, "filter"),
    (("/history",), "limit=0", 400, "limit"),
    (("/history",), "limit=1001", 400, "limit"),
    (("/history",), "limit=" + "9" * 40, 400, "limit"),
    (("/history",), "limit=" + q("\uff11"), 400, "limit"),
    (("/history",), "limit=1_0", 400, "limit"),
    (("/history",), "status=pending", 400, "status"),
    (("/history",), "format=xml", 400, "format"),
    (("/history",), "format=ndjson&limit=0", 400, "limit"),
    (("/report",), "top=0", 400, "top"),
    (("/report",), "top=101", 400, "top"),
    (("/report",), "bucket=2h", 400, "bucket"),
    (("/api/v2/alerts",), "active=maybe", 400, "active"),
    (("/api/v2/alerts",), "silenced=true&silenced=false", 400, "silenced"),
    (("/api/v2/alerts",), "receiver=" + q("("), 400, "receiver"),
    (("/api/v2/alerts",), "receiver=" + q("a++"), 400, "receiver"),
    (("/api/v2/alerts",), "receiver=" + q("x" * 1025), 400, "receiver"),
    (("/api/v2/alerts",), "receiver=%00", 400, "receiver"),
]

# Odd but valid: answered, never a 5xx.
EDGE_OK: list[tuple[tuple[str, ...], str]] = [
    (READS, "filter=" + q('job=~"' + nested(255) + '"')),  # 255-deep nesting: a RecursionError in Python's re
    (READS, "filter=" + q('job=~"' + "(?:" * 255 + "a" + ")" * 255 + '"')),
    (READS, "filter=" + q('job=~"x{255}"')),
    (READS, "filter=" + q('job=~"' + "(a" * 200 + ")*" * 200 + '"')),
    (READS, "filter=" + q('job=~"(?i)CPU.*"')),
    (READS, "filter=" + q('job=~"(a+)+$"')),
    (READS, "&".join(["filter=" + q('a!="b"')] * MAX_MATCHERS)),
    (READS, "filter=" + q('a="' + "é" * 1000 + '"')),
    (("/history", "/report"), "since=" + q("0001-01-01T00:00:00Z")),  # year 1: the earliest time there is
    (("/history", "/report"), "until=" + q("0001-01-01T00:00:00Z")),  # /report's default since is a day before
    (("/history", "/report"), "until=" + q("9999-12-31T23:59:59.999999Z")),
    (("/history",), "cursor=" + cursor(f"k-62135596800000000.{2**63 - 1}")),  # year 1, the largest id
    (("/history", "/report"), "since=-0s&unknown=" + q("ignored ✓")),
    (ALL_READS, "filter=" + q('"☃"="\U0001f600"')),
]


@pytest.mark.parametrize(("paths", "query", "status", "names"), HOSTILE)
async def test_hostile_parameter_is_a_4xx_naming_it(
    worker: Worker, http: aiohttp.ClientSession, paths: tuple[str, ...], query: str, status: int, names: str
) -> None:
    for path in paths:
        got, body = await get(http, worker, path, query)
        assert got == status, (path, query[:200], got, body)
        assert isinstance(body, dict) and names in body["error"], (path, query[:200], body)


@pytest.mark.parametrize(("paths", "query"), EDGE_OK)
async def test_odd_but_valid_parameters_are_answered(
    worker: Worker, http: aiohttp.ClientSession, paths: tuple[str, ...], query: str
) -> None:
    for path in paths:
        got, body = await get(http, worker, path, query)
        expected = 404 if path.startswith("/alerts/") else 200  # that fingerprint has no history
        assert got == expected, (path, query[:200], got, body)


async def test_a_filter_postgresql_rejects_is_named_among_several(worker: Worker, http: aiohttp.ClientSession) -> None:
    query = "&".join("filter=" + q(f) for f in ('a=~"x"', 'b!~"y{1,2}"', 'c=~"z{300}"', 'd=~"w"'))
    status, body = await get(http, worker, "/history", query)
    assert status == 400, body
    assert 'c=~"z{300}"' in body["error"] and "PostgreSQL" in body["error"], body


async def test_undecodable_bytes_in_the_request_line_are_a_400(worker: Worker) -> None:
    """Bytes that are not UTF-8, sent raw (not percent-encoded) in the request line: aiohttp refuses them itself
    (a plain-text 400) before any view runs."""
    for target in (b"/history?filter=\xff", b"/report?since=\xc3", b"/api/v2/status?\xff=1"):
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.port)
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head = await reader.read(65536)
        writer.close()
        status = int(head.split(b" ", 2)[1])
        assert 400 <= status < 500, (target, head[:300])


# --- generated query strings --------------------------------------------------------------------------------------

_NAMES = st.sampled_from(["filter", "since", "until", "status", "limit", "cursor", "top", "bucket", "format", "x"])
_REGEXISH = st.text(alphabet='()[]{}|*+?.^$\\-,:=!~"aAz09 é', max_size=30)
_MATCHER = st.builds(
    lambda name, op, value: f"{name}{op}{value}",
    st.sampled_from(["a", "job", '"quoted"', "{a", "", "é"]),
    st.sampled_from(["=", "!=", "=~", "!~", "==", "~"]),
    st.one_of(_REGEXISH, _REGEXISH.map(lambda v: f'"{v}"')),
)
_TIME = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.builds(lambda n, u: f"-{n}{u}", st.integers(0, 10**15), st.sampled_from(["ms", "s", "m", "h", "d", "w", "y"])),
    st.sampled_from(["now", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "-0d", "1e9s"]),
)
_VALUE = st.one_of(
    st.text(max_size=40),  # any code points, surrogates too: sent as the bytes they would encode to
    _MATCHER,
    _MATCHER.map(lambda m: "{" + m + "}"),
    _TIME,
    st.integers(-(2**70), 2**70).map(str),
    st.binary(max_size=24).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
    st.binary(max_size=12).map(lambda b: "".join(f"%{x:02X}" for x in b)),  # raw bytes, percent-encoded
)


def _encode(value: str) -> str:
    if value.startswith("%") or value == "":
        return value
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/history", "/report"]), pairs=st.lists(st.tuples(_NAMES, _VALUE), max_size=5))
async def test_generated_query_strings_never_get_a_5xx(
    worker: Worker, http: aiohttp.ClientSession, path: str, pairs: list[tuple[str, str]]
) -> None:
    query = "&".join(f"{name}={_encode(value)}" for name, value in pairs)
    status, body = await get(http, worker, path, query)
    assert status < 500, (path, query, status, body)
    if status >= 400:
        assert isinstance(body, dict) and body.get("error"), (query, body)


# --- the event loop ------------------------------------------------------------------------------------------------


async def test_a_catastrophic_regex_does_not_delay_healthz(worker: Worker, http: aiohttp.ClientSession) -> None:
    """`receiver=(a+)+$` against a receiver `aaaa…b` (Python's re: 6 s at 28 characters, doubling per character)
    and evil matchers, sent one after another for two seconds while /healthz is sampled every 20 ms.

    The assertion is on the median round trip: a regex that blocks the event loop delays every sample taken
    while it runs, so the median is seconds; the worst single sample on a shared 2-core machine also measures
    other processes' scheduling, which a healthy event loop cannot help."""
    run = unique()
    receiver = "a" * 40 + "b"
    body = webhook([am_alert({"alertname": "Evil", "run": run, "evil": "a" * 40})])
    body["receiver"] = receiver
    async with http.post(f"{worker.url}/webhook", json=body) as r:
        assert r.status == 202, await r.text()
    run_filter = "filter=" + q(f'run="{run}"')

    async def stored() -> bool:
        status, alerts = await get(http, worker, "/api/v2/alerts", run_filter)
        return status == 200 and [a["receivers"] for a in alerts] == [[{"name": receiver}]]

    await eventually(stored, what="the alert with the evil receiver is firing")
    evil = [
        ("/api/v2/alerts", f"{run_filter}&receiver=" + q("(a+)+$")),
        ("/api/v2/alerts", f"{run_filter}&receiver=" + q("(a|aa)+$") + "&filter=" + q('evil=~"(a+)+b"')),
        ("/history", f"{run_filter}&filter=" + q('evil=~"(a*)*b"')),
        ("/report", f"{run_filter}&filter=" + q('evil!~"(a|a?)+c"')),
    ]
    timeout = aiohttp.ClientTimeout(total=5)
    deadline = time.monotonic() + 2
    samples: list[float] = []

    async def attack() -> list[int | str]:
        outcomes: list[int | str] = []
        while time.monotonic() < deadline:
            path, query = evil[len(outcomes) % len(evil)]
            try:
                async with http.get(URL(f"{worker.url}{path}?{query}", encoded=True), timeout=timeout) as r:
                    outcomes.append(r.status)
            except TimeoutError:
                outcomes.append(f"{path} timed out")
        return outcomes

    async def sample() -> None:
        async with aiohttp.ClientSession(timeout=timeout) as own:  # its own connection, never queued behind
            while time.monotonic() < deadline:
                began = time.monotonic()
                try:
                    async with own.get(f"{worker.url}/healthz") as r:
                        assert r.status == 200
                    samples.append(time.monotonic() - began)
                except TimeoutError:
                    samples.append(timeout.total or 5)
                await asyncio.sleep(0.02)

    outcomes, _ = await asyncio.gather(attack(), sample())
    median = statistics.median(samples)
    assert median < 0.1, f"/healthz median {median * 1000:.0f} ms (worst {max(samples) * 1000:.0f} ms)"
    assert len(samples) >= 10, samples
    assert len(outcomes) >= len(evil) and set(outcomes) == {200}, outcomes
