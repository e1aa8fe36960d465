"""The HTTP API as pydantic models: every endpoint's query, path and header parameters and every JSON body it
takes or gives. web/openapi.py generates /openapi.json from them, web/params.py reads its bounds and defaults
from them, and tests/web/test_openapi.py holds real responses to them: one source, so the three cannot drift.

Parameter models list what a view reads (web/params.py refuses to read one they do not declare); response models
forbid extra keys, so a field added to a response and not here fails the test.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.enrich.model import Classification
from app.fingerprint import fingerprint
from app.matchers import MAX_FILTER_LEN, MAX_MATCHERS
from app.models import FINGERPRINT, AlertIn, Fingerprint, Status, WebhookIn
from app.settings import EnrichmentMode
from sinks.publishers.message import FilterDecision

MAX_TIME_LEN = 64  # characters of a since/until parameter
EXAMPLE_LABELS = {"alertname": "DiskFull", "instance": "db-1", "severity": "critical"}  # the examples' alert
Labels = dict[str, str]
Time = datetime  # in responses: RFC 3339, UTC, milliseconds, `Z` (app.events.rfc3339)


class _Params(BaseModel):
    """Query, path or header parameters: each field one parameter."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Body(BaseModel):
    """A response body: exactly these keys."""

    model_config = ConfigDict(extra="forbid")


# ---- parameters ---------------------------------------------------------------------------------------------

Filter = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_FILTER_LEN)]],
    Field(
        default_factory=list,
        max_length=MAX_MATCHERS,
        description='Alertmanager matchers (=, !=, =~, !~), e.g. `severity=~"crit.*"` or `{team="db",env!="dev"}`; '
        "repeatable, ANDed.",
    ),
]
Since = Annotated[
    str | None,
    Field(None, max_length=MAX_TIME_LEN, description="RFC 3339 time, `now`, or relative: `-6h`, `30m`, `7d`."),
]
Until = Annotated[
    str | None, Field(None, max_length=MAX_TIME_LEN, description="RFC 3339 time, `now`, or relative like `-1h`.")
]


class NoParams(_Params):
    """An endpoint that reads no query parameter (the query string is still checked: UTF-8, no NUL)."""


At = Annotated[
    str | None,
    Field(None, max_length=MAX_TIME_LEN, description="A moment (RFC 3339, `now` or relative): what was firing then, "
          "from history (time travel)."),
]  # fmt: skip


class HistoryParams(_Params):
    filter: Filter
    since: Since
    until: Until
    at: At = Field(None, description="A moment (RFC 3339, `now` or relative): for each alert firing then, the event "
                   "that opened its episode; not with since, until or status.")  # fmt: skip
    status: Status | None = Field(None, description="Only events of this status.")
    limit: int = Field(100, ge=1, le=1000, description="Page size.")
    cursor: str | None = Field(None, description="The `next` of the previous page.")
    format: Literal["json", "ndjson"] = Field("json", description="`ndjson` streams every match, one event a line.")


_AM_FLAG = "Alertmanager flag; every alert here is active, so only active=false changes the answer (to none)."


class AlertsAtParams(_Params):
    """/at/{at}/api/v2/alerts: Alertmanager's parameters; the moment is in the path."""

    filter: Filter
    active: bool = Field(True, description=_AM_FLAG)
    silenced: bool = Field(True, description=_AM_FLAG)
    inhibited: bool = Field(True, description=_AM_FLAG)
    unprocessed: bool = Field(True, description=_AM_FLAG)
    receiver: str | None = Field(None, description="Regex (RE2) on the receiver name, anchored.")


class AlertsParams(AlertsAtParams):
    at: At


class AtPath(_Params):
    at: str = Field(max_length=MAX_TIME_LEN, description="A moment: RFC 3339, `now` or relative like `-6h`.",
                    examples=["2026-11-20T10:00:00Z"])  # fmt: skip


class ReportParams(_Params):
    filter: Filter
    since: Since
    until: Until
    top: int = Field(10, ge=1, le=100, description="Length of each ranking.")
    bucket: Literal["1h", "1d"] = Field("1h", description="Time series step.")


class EventsParams(_Params):
    filter: Filter
    cursor: str | None = Field(None, description="An SSE id of an earlier stream: resume after it (Last-Event-ID wins)")


class EventsHeaders(_Params):
    last_event_id: str | None = Field(None, alias="Last-Event-ID", description="The last SSE id seen: resume after it.")


class TimelinePath(_Params):
    fingerprint: str = Field(
        pattern=FINGERPRINT,
        description="The alert's fingerprint (16 lowercase hex digits).",
        examples=[fingerprint(EXAMPLE_LABELS)],
    )


class StaticPath(_Params):
    name: str = Field(description="A file of the dashboard.", examples=["app.js", "style.css", "favicon.svg"])


class StaticHeaders(_Params):
    if_none_match: str | None = Field(None, alias="If-None-Match", description="The ETag of a copy the client has.")


# ---- request bodies -----------------------------------------------------------------------------------------


class Alert(AlertIn):
    """One alert: an element of a webhook's `alerts[]`, of POST /api/v2/alerts, and a message of the topic."""

    fingerprint: Fingerprint | None = Field(
        None, description="Optional: derived from the labels as Alertmanager does; one given must be that (else 422)."
    )


class Webhook(WebhookIn):
    """Alertmanager webhook payload, version 4 (its alerts are checked one by one, as the topic's messages)."""

    version: Literal["4"] | None = None  # what WebhookIn's validator accepts
    alerts: list[Alert] = Field(min_length=1, max_length=10000)  # the documented shape: each an Alert


PostableAlerts = Annotated[list[Alert], Field(max_length=10000)]


class ModeIn(BaseModel):
    """PUT /enrichment/mode body."""

    model_config = ConfigDict(extra="forbid")

    mode: EnrichmentMode


# ---- responses ----------------------------------------------------------------------------------------------


class Error(_Body):
    error: str = Field(description="What is wrong, naming the parameter or field.")


class Accepted(_Body):
    accepted: int = Field(ge=0, description="Alerts Kafka acknowledged.")


class Event(_Body):
    """One stored event: a (fingerprint, status, startsAt) as first seen, with its resend counters."""

    id: str = Field(pattern=r"^[0-9]+$", description="63-bit integer as a string")
    fingerprint: str = Field(pattern=FINGERPRINT)
    status: Status
    labels: Labels
    annotations: Labels
    startsAt: Time
    endsAt: Time | None
    generatorURL: str
    receivedAt: Time
    lastSeenAt: Time
    duplicates: int = Field(ge=0)
    flapping: bool
    severity: str
    classification: Classification | None = Field(description="The enrich agent's; null until it has seen the event.")
    filter: FilterDecision | None = Field(description="The filter rule that decided publishing; null until decided.")


class Page(_Body):
    items: list[Event]
    next: str | None = Field(description="cursor of the next page; null on the last")


class StreamEnd(_Body):
    """The last line of an ndjson stream cut short (time limit, statement timeout): resume from `next`."""

    error: str
    next: str | None


class Episode(_Body):
    startsAt: Time
    resolvedAt: Time | None
    durationSeconds: float | None
    status: Status
    events: int = Field(ge=1)
    flapping: bool


class Timeline(_Body):
    fingerprint: str = Field(pattern=FINGERPRINT)
    labels: Labels
    items: list[Event]
    episodes: list[Episode]


class RankedAlert(_Body):
    """A noisiest alert of /report."""

    fingerprint: str
    alertname: str
    labels: Labels
    events: int
    duplicates: int
    notifications: int = Field(description="events + duplicates: what a receiver was sent")
    flapping_events: int
    lastReceivedAt: Time


class FlappingAlert(_Body):
    """A flapping alert of /report."""

    fingerprint: str
    alertname: str
    labels: Labels
    flapping_events: int
    transitions: int = Field(description="its rows in range: first sighting, transitions, resightings")
    lastReceivedAt: Time
    firstFlappingAt: Time


class AlertnameMttr(_Body):
    alertname: str
    mttr_seconds: float | None
    p50_seconds: float | None
    p90_seconds: float | None
    episodes: int


class Mttr(_Body):
    overall: float | None
    p50: float | None
    p90: float | None
    episodes: int
    by_alertname: list[AlertnameMttr]


class Bucket(_Body):
    start: Time
    total: int
    by_status: dict[str, int]
    by_severity: dict[str, int]


class Report(_Body):
    since: Time
    until: Time
    total_events: int
    unique_alerts: int
    duplicates_suppressed: int
    flapping_events: int
    top_alerts: list[RankedAlert]
    flapping_alerts: list[FlappingAlert]
    mttr_seconds: Mttr
    bucket_seconds: int
    buckets: list[Bucket]
    source: Literal["rollup", "events"] = Field(
        description="Which path answered: the rollups, or a scan of the events (any filter). MTTR p50/p90 from the "
        "rollups are within 2.19% of the scan's."
    )


class Receiver(_Body):
    name: str


class AlertState(_Body):
    state: Literal["active", "suppressed", "unprocessed"]
    silencedBy: list[str]
    inhibitedBy: list[str]
    mutedBy: list[str]


class GettableAlert(_Body):
    """Alertmanager API v2 gettableAlert."""

    labels: Labels
    annotations: Labels
    startsAt: Time
    endsAt: Time = Field(description="0001-01-01T00:00:00.000Z when no end is known (Alertmanager's zero time)")
    updatedAt: Time
    generatorURL: str
    fingerprint: str = Field(pattern=FINGERPRINT)
    receivers: list[Receiver]
    status: AlertState


GettableAlerts = list[GettableAlert]


class Cluster(_Body):
    name: str
    status: Literal["ready", "settling", "disabled"]
    peers: list[Any]


class VersionInfo(_Body):
    version: str
    revision: str
    branch: str
    buildUser: str
    buildDate: str
    goVersion: str


class Config(_Body):
    original: str


class AlertmanagerStatus(_Body):
    """Alertmanager API v2 status: what amtool reads first."""

    cluster: Cluster
    versionInfo: VersionInfo
    config: Config
    uptime: Time


class ModeOut(_Body):
    """The mode, and whether every node shares it (Redis) or it is this process's alone."""

    mode: EnrichmentMode
    scope: Literal["cluster", "process"] = Field(description="cluster: kept in Redis, every node applies it")
    note: str | None = Field(None, description="present when the mode is this process's alone (no Redis)")


class Health(_Body):
    status: Literal["ok"]


class Readiness(_Body):
    ready: bool
    checks: dict[str, Any] | None = Field(
        None, description="Per-check status; only for a caller who may read (ALERT_HISTORY_READ_TOKEN)."
    )


OpenAPIDocument = dict[str, Any]
