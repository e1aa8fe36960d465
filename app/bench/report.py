"""What a bench run prints: the table of every measure, then, last, exactly one `BENCH {json}` line."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

# The BENCH line's first keys, always there (null when not measured): what scripts and the lead compare between runs.
# Every other figure of the run follows them.
BENCH_KEYS = (
    "e2e_alerts_per_s",
    "naive_alerts_per_s",
    "freshness_p95_ms",
    "webhook_alerts_per_s",
    "webhook_p99_ms",
    "history_p95_ms",
    "report_p95_ms",
    "timetravel_p95_ms",
    "events_seeded",
    "worker_rss_mb",
    "worker_cpu_us_per_alert",
    "pg_cpu_us_per_alert",
    "bridge_cpu_us_per_alert",
    "enrich_llm_events_per_s",
    "enrich_cache_events_per_s",
    "events_topic_cost_pct",
)


@dataclass(frozen=True)
class Row:
    measure: str
    value: str
    goal: str
    verdict: str

    def cells(self) -> tuple[str, str, str, str]:
        return (self.measure, self.value, self.goal, self.verdict)


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    summary: dict[str, float | None] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # phases that failed

    def add(self, key: str, label: str, value: float | None, unit: str, goal: str, ok: bool | None) -> None:
        """One measure: `key` in the summary and the BENCH line, a row of the table."""
        self.summary[key] = None if value is None else round(value, 1)
        shown = "n/a" if value is None else f"{value:,.1f} {unit}"
        self.rows.append(Row(label, shown, goal, "" if ok is None else ("ok" if ok else "MISSED")))


    def fail(self, phase: str, reason: str) -> None:
        """A phase that could not finish: a row saying why (its figures so far stay)."""
        self.failed.append(phase)
        self.rows.append(Row(f"phase {phase} FAILED: {reason}", "n/a", "", "MISSED"))


def table(res: Results) -> str:
    head = ("measure", "value", "goal", "")
    rows = [head, *(r.cells() for r in res.rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    out = [line]
    for r in rows:
        cells = zip(r, widths, strict=True)
        out.append("  ".join(c.rjust(w) if i == 1 else c.ljust(w) for i, (c, w) in enumerate(cells)))
        if r is head:
            out.append(line)
    out.append(line)
    return "\n".join(out)


def bench_line(res: Results) -> str:
    """Every figure: BENCH_KEYS first (null when not measured), then the others in the order measured."""
    figures: dict[str, object] = {k: res.summary.get(k) for k in BENCH_KEYS}
    figures.update((k, v) for k, v in res.summary.items() if k not in figures)
    if res.failed:
        figures["failed_phases"] = res.failed
    return "BENCH " + orjson.dumps(figures).decode()
