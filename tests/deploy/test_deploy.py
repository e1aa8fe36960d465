"""deploy/: the Prometheus rules pass promtool (syntax and their unit tests), the Grafana dashboard is a valid model
whose panels read metrics app/metrics.py defines (with labels they have) and SQL that runs on our schema, and a
worker exports the lag the rules and the dashboard read."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client.metrics import MetricWrapperBase

from app import metrics
from tests.fixtures import REPO, Worker, eventually

RULES = REPO / "deploy" / "prometheus-rules.yml"
RULE_TESTS = REPO / "tests" / "deploy" / "prometheus-rules.test.yml"
DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"
SCRAPE_LABELS = {"job", "instance"}  # what Prometheus adds to every series it scrapes
STANDARD = {"up": set(), "process_start_time_seconds": set()}  # not ours: Prometheus's and prometheus_client's
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}
_SERIES = re.compile(r"\b(alert_history_[a-z_]+|up|process_start_time_seconds)\b(\{[^}]*\})?")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"')


def exported() -> dict[str, set[str]]:
    """Every series name app/metrics.py exports, with the labels it has."""
    names: dict[str, set[str]] = dict(STANDARD)
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            for suffix in SUFFIXES[family.type]:
                labels = set(value._labelnames) | ({"le"} if suffix == "_bucket" else set())
                names[family.name + suffix] = labels
    return names


def series_used(expr: str) -> list[tuple[str, set[str]]]:
    return [(m.group(1), set(_LABEL.findall(m.group(2) or ""))) for m in _SERIES.finditer(expr)]


def check_expr(expr: str, where: str) -> None:
    known = exported()
    used = series_used(expr)
    assert used, f"{where}: reads no metric: {expr}"
    for name, labels in used:
        assert name in known, f"{where}: {name} is not a metric app/metrics.py exports"
        extra = labels - known[name] - SCRAPE_LABELS
        assert not extra, f"{where}: {name} has no label {sorted(extra)}"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: install Debian's prometheus package (scripts/bootstrap.sh does)"
    return path


# ---- Prometheus rules -------------------------------------------------------------------------------------------


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    for argv in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        done = subprocess.run([promtool(), *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"promtool {' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
        assert "SUCCESS" in done.stdout


def test_every_rule_reads_metrics_we_export() -> None:
    exprs = re.findall(r"^\s+expr:\s*(?:>-\n)?((?:.*\n)+?)\s+(?:for|labels):", RULES.read_text(), re.MULTILINE)
    assert len(exprs) == RULES.read_text().count("- alert:") >= 6
    for expr in exprs:
        check_expr(expr, "deploy/prometheus-rules.yml")


# ---- the Grafana dashboard ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # a JSON error fails here


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_the_dashboard_is_a_grafana_model_with_its_data_sources_declared(dashboard: dict[str, Any]) -> None:
    assert {"title", "uid", "schemaVersion", "panels", "templating", "time"} <= dashboard.keys()
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    sources = {f"${{{name}}}": v["query"] for name, v in variables.items() if v["type"] == "datasource"}
    assert set(sources.values()) == {"prometheus", "grafana-postgresql-datasource"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in "hwxy") and 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
    for p in panels(dashboard):
        assert p["type"] in ("timeseries", "stat", "table", "barchart", "gauge"), p["type"]
        assert p["datasource"]["uid"] in sources and sources[p["datasource"]["uid"]] == p["datasource"]["type"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"], p["title"]
    job = variables["job"]
    check_expr(job["definition"], "the job variable")


def test_every_prometheus_panel_reads_metrics_we_export(dashboard: dict[str, Any]) -> None:
    read: set[str] = set()
    for p in panels(dashboard):
        for t in p["targets"]:
            if "expr" in t:
                check_expr(t["expr"], f"panel {p['title']!r}")
                read |= {name for name, _ in series_used(t["expr"])}
    # What an operator needs to see: ingest, lag per partition, batch phases, sink latency, DLQ, events published.
    assert {
        "alert_history_accepted_alerts_total", "alert_history_events_total", "alert_history_consumer_lag",
        "alert_history_batch_phase_seconds_total", "alert_history_batch_seconds_bucket",
        "alert_history_dead_letters_total", "alert_history_events_published_total",
    } <= read  # fmt: skip


def grafana_sql(raw: str, now: datetime) -> str:
    """The panel's SQL with Grafana's macros as the PostgreSQL data source expands them, over the last 6 hours."""
    since = (now - timedelta(hours=6)).isoformat()
    raw = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{since}' AND '{now.isoformat()}'", raw)
    raw = re.sub(r"\$__timeGroupAlias\((\w+), '(\w+)'\)", r"date_bin('\2', \1, 'epoch') AS time", raw)
    assert "$__" not in raw, f"a macro this test does not expand: {raw}"
    return raw


async def test_every_sql_panel_runs_on_our_schema(dashboard: dict[str, Any], db: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    queries = [(p["title"], t) for p in panels(dashboard) for t in p["targets"] if "rawSql" in t]
    assert len(queries) >= 5
    async with db.acquire() as conn:
        for title, target in queries:
            statement = await conn.prepare(grafana_sql(target["rawSql"], now))  # a bad table or column fails here
            columns = [a.name for a in statement.get_attributes()]
            if target["format"] == "time_series":
                assert columns == ["time", "metric", "value"], (title, columns)
            await statement.fetch()


# ---- the lag they read ---------------------------------------------------------------------------------------------


async def test_a_worker_exports_its_lag_per_owned_partition(worker: Worker, http) -> None:  # type: ignore[no-untyped-def]
    async def lag() -> dict[str, float] | None:
        async with http.get(f"{worker.url}/metrics") as r:
            text = await r.text()
        owned = re.search(r"^alert_history_assigned_partitions (\S+)$", text, re.MULTILINE)
        found = dict(re.findall(r'^alert_history_consumer_lag\{partition="(\d+)"\} (\S+)$', text, re.MULTILINE))
        if owned and float(owned.group(1)) > 0 and len(found) == int(float(owned.group(1))):
            return {p: float(v) for p, v in found.items()}
        return None

    found = await eventually(lag, timeout=30, what="a lag series for each partition the worker owns")
    assert all(v >= 0 for v in found.values())
