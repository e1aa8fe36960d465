"""`alert-history history` and `report` on a seeded history, through a web node's HTTP API: the table for people,
NDJSON and JSON for scripts equal to what the API answers, and the exit codes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from app.events import rfc3339
from app.services import Endpoints
from tests.fixtures import REPO, Worker, scratch_database_url
from tests.web.demo_history import seed_demo
from web.stream import BATCH_ROWS

TOKEN = "cli-read-token-" + "r" * 16
NOW = datetime.now(UTC).replace(microsecond=0)
SINCE, UNTIL = rfc3339(NOW - timedelta(days=2)), rfc3339(NOW)


@dataclass
class Seeded:
    node: Worker
    fingerprints: dict[str, str]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
async def seeded(endpoints: Endpoints, make_worker: Callable[..., Worker]) -> AsyncIterator[Seeded]:
    """A web node with a read token on a database of its own holding the demo history; each ndjson stream ends
    after one batch, so a long export takes several streams."""
    async with scratch_database_url(endpoints, "cli") as url:
        conn = await asyncpg.connect(url)
        try:
            fingerprints = await seed_demo(conn, NOW, days=2)
            total = await conn.fetchval("SELECT count(*) FROM alert_events")
            assert total > BATCH_ROWS, "the export must span more than one stream"
        finally:
            await conn.close()
        node = make_worker(pipeline_enabled=False, database_url=url, read_token=TOKEN, ndjson_max_seconds=0.001)
        try:
            await node.wait_ready(partitions=False)
            yield Seeded(node, fingerprints)
        finally:
            await asyncio.to_thread(node.stop)


async def cli(*argv: str, token: str | None = TOKEN, **env: str) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_HISTORY_")}
    if token is not None:
        environ["ALERT_HISTORY_READ_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", *argv, cwd=REPO, env={**environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def api(http: aiohttp.ClientSession, s: Seeded, path: str, **params: str) -> bytes:
    async with http.get(f"{s.node.url}{path}", params=params, headers=s.auth) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def test_history_table_for_people(seeded: Seeded, http: aiohttp.ClientSession) -> None:
    matcher = 'alertname="PostgresReplicationLag"'
    code, out, err = await cli("history", matcher, "--since", SINCE, "--until", UNTIL, "--limit", "20",
                               "--url", seeded.node.url)  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["RECEIVED", "(UTC)", "STATUS", "SEVERITY", "ALERTNAME", "LABELS", "RESENDS", "FLAPPING"]
    page = orjson.loads(await api(http, seeded, "/history", filter=matcher, since=SINCE, until=UNTIL, limit="20"))
    rows = lines[1:-1]
    assert len(rows) == 20 and lines[-1] == "20 events, newest first"
    for row, event in zip(rows, page["items"], strict=True):
        cells = row.split()
        assert cells[:2] == event["receivedAt"][:19].split("T"), (row, event)
        assert cells[2:5] == [event["status"], "critical", "PostgresReplicationLag"]
        assert f"namespace={event['labels']['namespace']}" in row and cells[6] == str(event["duplicates"])
    assert "more in range" in err  # there is more than 20


async def test_history_json_is_every_match_as_ndjson_across_streams(
    seeded: Seeded, http: aiohttp.ClientSession
) -> None:
    code, out, err = await cli("history", "--since", SINCE, "--until", UNTIL, "--json", "--url", seeded.node.url)
    assert code == 0, err
    got = [orjson.loads(line) for line in out.splitlines()]
    expected: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        page = orjson.loads(await api(http, seeded, "/history", since=SINCE, until=UNTIL, limit="1000",
                                      **({"cursor": cursor} if cursor else {})))  # fmt: skip
        expected += page["items"]
        if not (cursor := page["next"]):
            break
    assert len(got) > BATCH_ROWS and got == expected, "every event once, newest first, as /history has them"
    code, out, _ = await cli("history", "--since", SINCE, "--json", "--limit", "7", "--url", seeded.node.url)
    assert code == 0 and len(out.splitlines()) == 7


async def test_report_table_and_json_are_report_s_numbers(seeded: Seeded, http: aiohttp.ClientSession) -> None:
    args = ("--since", SINCE, "--until", UNTIL, "--top", "5", "--url", seeded.node.url)
    code, out, err = await cli("report", "--json", *args)
    assert code == 0, err
    report = orjson.loads(await api(http, seeded, "/report", since=SINCE, until=UNTIL, top="5"))
    assert orjson.loads(out) == report
    code, out, err = await cli("report", *args)
    assert code == 0, err
    assert (f"events {report['total_events']}  alerts {report['unique_alerts']}  "
            f"resends suppressed {report['duplicates_suppressed']}") in out  # fmt: skip
    noisy = out.split("Noisiest alerts")[1].split("Flapping alerts")[0].splitlines()[2:-1]
    assert [line.split()[:4] for line in noisy] == [
        [str(a["events"]), str(a["duplicates"]), str(a["flapping_events"]), a["alertname"]]
        for a in report["top_alerts"]
    ]
    mttr = out.split("MTTR by alertname")[1].splitlines()[2:]
    assert [line.split()[:2] for line in mttr] == [
        [a["alertname"], str(a["episodes"])] for a in report["mttr_seconds"]["by_alertname"]
    ]


async def test_the_token_comes_from_a_file_too(seeded: Seeded, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    code, out, err = await cli("report", "--token-file", str(path), "--url", seeded.node.url, token=None)
    assert code == 0, err
    assert out.startswith(SINCE[:4])


@pytest.mark.parametrize(
    ("argv", "token", "code", "says"),
    [
        (["history", 'alertname=~"("'], TOKEN, 2, "invalid regular expression"),  # checked before any call
        (["history", "alertname"], TOKEN, 2, "bad matcher"),
        (["report", "--top", "x"], TOKEN, 2, "invalid int value"),
        (["history", "--since", "yesterday"], TOKEN, 65, "since: 'yesterday' is neither RFC 3339"),
        (["report", "--top", "1000"], TOKEN, 65, "top: must be between 1 and 100"),
        (["history"], None, 77, "ALERT_HISTORY_READ_TOKEN"),
        (["report"], "wrong-token-" + "w" * 16, 77, "the token does not match"),
    ],
)
async def test_exit_codes_say_what_went_wrong(seeded: Seeded, argv: list[str], token: str | None, code: int,
                                              says: str) -> None:  # fmt: skip
    got, out, err = await cli(*argv, "--url", seeded.node.url, token=token)
    assert (got, out) == (code, ""), err
    assert says in err and TOKEN not in err


async def test_an_unreachable_server_is_69_and_a_bad_matcher_is_found_without_one(seeded: Seeded) -> None:
    closed = "http://127.0.0.1:9"  # discard: nothing listens
    code, _, err = await cli("history", "--url", closed)
    assert code == 69 and "cannot reach http://127.0.0.1:9" in err and "--url" in err
    code, _, err = await cli("history", 'a!~"x**"', "--url", closed, ALERT_HISTORY_URL=closed)
    assert code == 2 and "bad matcher" in err
