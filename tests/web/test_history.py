"""GET /history parameters on real PostgreSQL, through the running worker."""

from __future__ import annotations

from tests.fixtures import Worker, eventually, unique
from tests.web.test_webhook import am_alert, webhook


async def _seed(http, worker: Worker, run: str, n: int) -> None:  # type: ignore[no-untyped-def]
    alerts = [
        am_alert({"alertname": "Paged", "run": run, "i": f"{i:02d}", "team": "db" if i % 2 else "web"})
        for i in range(n)
    ]
    async with http.post(f"{worker.url}/webhook", json=webhook(alerts)) as r:
        assert r.status == 202

    async def stored():  # type: ignore[no-untyped-def]
        async with http.get(f"{worker.url}/history", params={"filter": f'run="{run}"', "limit": "1000"}) as r:
            return len((await r.json())["items"]) == n

    await eventually(stored, what=f"{n} events stored")


async def test_matchers_limit_cursor_and_time_range(worker: Worker, http) -> None:
    run = unique()
    await _seed(http, worker, run, 10)
    url = f"{worker.url}/history"
    async with http.get(url, params=[("filter", f'run="{run}"'), ("filter", 'team=~"d.*"')]) as r:
        items = (await r.json())["items"]
    assert len(items) == 5 and {i["labels"]["team"] for i in items} == {"db"}
    async with http.get(url, params={"filter": f'{{run="{run}",team!="db"}}'}) as r:
        assert len((await r.json())["items"]) == 5

    seen, cursor = [], None
    while True:
        params = {"filter": f'run="{run}"', "limit": "3", **({"cursor": cursor} if cursor else {})}
        async with http.get(url, params=params) as r:
            page = await r.json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == 10 == len(set(seen))

    async with http.get(url, params={"filter": f'run="{run}"', "since": "-1h", "until": "now"}) as r:
        assert len((await r.json())["items"]) == 10
    async with http.get(url, params={"filter": f'run="{run}"', "until": "2000-01-01T00:00:00Z"}) as r:
        assert (await r.json())["items"] == []


async def test_ndjson_streams_every_match(worker: Worker, http) -> None:
    run = unique()
    await _seed(http, worker, run, 4)
    async with http.get(f"{worker.url}/history", params={"filter": f'run="{run}"', "format": "ndjson"}) as r:
        assert r.headers["Content-Type"].startswith("application/x-ndjson")
        lines = (await r.text()).strip().splitlines()
    assert len(lines) == 4


async def test_bad_parameters_are_400_naming_them(worker: Worker, http) -> None:
    for params, says in [
        ({"filter": 'a=~"("'}, "filter"),
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since is after until"),
        ({"status": "pending"}, "status"),
        ({"cursor": "!!"}, "cursor"),
    ]:
        async with http.get(f"{worker.url}/history", params=params) as r:
            assert r.status == 400, params
            assert says in (await r.json())["error"], params


async def test_paging_while_inserts_go_on_shows_every_row_once(worker: Worker, http) -> None:
    run = unique()
    await _seed(http, worker, run, 12)
    url = f"{worker.url}/history"
    async with http.get(url, params={"filter": f'run="{run}"', "limit": "1000"}) as r:
        before = {i["id"] for i in (await r.json())["items"]}
    seen: list[str] = []
    cursor, n = None, 0
    while True:
        params = {"filter": f'run="{run}"', "limit": "4", **({"cursor": cursor} if cursor else {})}
        async with http.get(url, params=params) as r:
            page = await r.json()
        seen += [i["id"] for i in page["items"]]
        # Newer events land while we page: they must neither repeat nor push older ones out.
        late = [am_alert({"alertname": "Late", "run": run, "n": f"{n}-{k}"}) for k in range(3)]
        async with http.post(f"{worker.url}/webhook", json=webhook(late)) as r:
            assert r.status == 202
        n += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "an event was shown twice"
    assert before <= set(seen), "an event that existed before paging began was skipped"
