"""Read-side SQL, all parameterised: history pages and per-alert timelines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.matchers import Matcher, matchers_to_sql
from web.api import rfc3339

EVENT_COLUMNS = (
    "id, seq, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, received_at, "
    "last_seen_at, duplicates, flapping, severity, classification"
)


@dataclass(frozen=True)
class HistoryQuery:
    matchers: Sequence[Matcher] = ()
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None
    fingerprint: str | None = None
    before_seq: int | None = None  # keyset cursor: rows committed before this one
    limit: int | None = 100
    oldest_first: bool = False

    def sql(self) -> tuple[str, list[Any]]:
        clauses, params = matchers_to_sql(self.matchers, "labels", 1)
        for column, op, value in (
            ("received_at", ">=", self.since),
            ("received_at", "<=", self.until),
            ("status", "=", self.status),
            ("fingerprint", "=", self.fingerprint),
            ("seq", "<", self.before_seq),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} {op} ${len(params)}")
        where = " AND ".join(clauses) or "true"
        order = "seq ASC" if self.oldest_first else "seq DESC"
        sql = f"SELECT {EVENT_COLUMNS} FROM alert_events WHERE {where} ORDER BY {order}"
        if self.limit is not None:
            params.append(self.limit)
            sql += f" LIMIT ${len(params)}"
        return sql, params


def event_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """The event shape of the contract."""
    return {
        "id": str(row["id"]),  # 63-bit: a string, so JavaScript clients keep every digit
        "fingerprint": row["fingerprint"],
        "status": row["status"],
        "labels": row["labels"],
        "annotations": row["annotations"],
        "startsAt": rfc3339(row["starts_at"]),
        "endsAt": rfc3339(row["ends_at"]),
        "generatorURL": row["generator_url"],
        "receivedAt": rfc3339(row["received_at"]),
        "lastSeenAt": rfc3339(row["last_seen_at"]),
        "duplicates": row["duplicates"],
        "flapping": row["flapping"],
        "severity": row["severity"],
        "classification": row["classification"],
    }
