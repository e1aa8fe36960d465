"""`alert-history history` and `alert-history report`: the HTTP API for people (tables) and scripts (JSON).

Exit codes: 0 done; 2 bad usage or a bad matcher (checked before any call); 65 the server refused the request
(a 400: it names the parameter); 69 the server is unreachable or unavailable (connection refused, 5xx, busy);
77 not allowed (401: set ALERT_HISTORY_READ_TOKEN, ALERT_HISTORY_API_TOKEN or --token-file).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import IO, Any

import orjson

from app.matchers import MatcherError, parse_filters

EX_OK, EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_NOPERM = 0, 2, 65, 69, 77
DEFAULT_URL = "http://127.0.0.1:6066"
TIMEOUT_S = 30.0  # past the server's query timeout (10 s) and its client margin
BUSY_RETRIES = 5
PAGE = 1000


class CliError(Exception):
    """What went wrong, for stderr, and the exit code that says so to a script."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Api:
    """GETs on the HTTP API with the read token; every failure a CliError naming what to do."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def open(self, path: str, params: Sequence[tuple[str, str]]) -> Any:
        request = urllib.request.Request(f"{self.url}{path}?{urllib.parse.urlencode(params)}")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for attempt in range(BUSY_RETRIES + 1):
            try:
                return urllib.request.urlopen(request, timeout=TIMEOUT_S)
            except urllib.error.HTTPError as exc:
                retry_after = exc.headers.get("Retry-After")
                if exc.code in (429, 503) and retry_after and retry_after.isdigit() and attempt < BUSY_RETRIES:
                    time.sleep(min(int(retry_after), 30))
                    continue
                raise self._refused(exc) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise CliError(
                    f"cannot reach {self.url} ({reason}); is alert-history running? (--url)", EX_UNAVAILABLE
                ) from None
        raise AssertionError("unreachable")

    def json(self, path: str, params: Sequence[tuple[str, str]]) -> Any:
        with self.open(path, params) as resp:
            return orjson.loads(resp.read())

    def _refused(self, exc: urllib.error.HTTPError) -> CliError:
        try:
            message = orjson.loads(exc.read()).get("error", "")
        except (orjson.JSONDecodeError, AttributeError, OSError):
            message = ""
        message = message or exc.reason
        if exc.code == 401:
            return CliError(
                f"{self.url} refused the read: {message} (set ALERT_HISTORY_READ_TOKEN or use --token-file)", EX_NOPERM
            )
        if exc.code >= 500 or exc.code == 429:
            return CliError(f"{self.url} is unavailable ({exc.code}): {message}", EX_UNAVAILABLE)
        return CliError(f"{self.url} refused the request ({exc.code}): {message}", EX_DATAERR)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"alert-history {prog}", description=description)
    parser.add_argument("matchers", nargs="*", metavar="MATCHER",
                        help='Alertmanager matchers, as /history\'s filter: alertname="DiskFull" \'{team=~"db.*"}\'')
    parser.add_argument("--since", help="RFC 3339, or relative: 30m, 6h, 7d (default: history 6h, report 24h)")
    parser.add_argument("--until", help="RFC 3339, or relative (default: now)")
    parser.add_argument("--json", action="store_true", help="JSON for scripts instead of a table")
    parser.add_argument("--url", default=os.environ.get("ALERT_HISTORY_URL", DEFAULT_URL),
                        help=f"the API (default: $ALERT_HISTORY_URL or {DEFAULT_URL})")
    parser.add_argument("--token-file", help="a file holding the read token (default: $ALERT_HISTORY_READ_TOKEN, "
                        "else $ALERT_HISTORY_API_TOKEN)")  # fmt: skip
    return parser


def _setup(args: argparse.Namespace) -> tuple[Api, list[tuple[str, str]]]:
    """The API client and the query's common parameters; a bad matcher stops here, before any call."""
    try:
        parse_filters(args.matchers)
    except MatcherError as exc:
        raise CliError(f"{exc} (matchers are Alertmanager's: name=\"value\", =~ for a regex)", EX_USAGE) from None
    token = os.environ.get("ALERT_HISTORY_READ_TOKEN") or os.environ.get("ALERT_HISTORY_API_TOKEN")
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise CliError(f"--token-file: {exc.strerror}: {args.token_file}", EX_USAGE) from None
    params = [("filter", m) for m in args.matchers]
    params += [(name, value) for name, value in (("since", args.since), ("until", args.until)) if value]
    return Api(args.url, token), params


# ---- history ----------------------------------------------------------------------------------------------------


def cmd_history(argv: list[str]) -> int:
    parser = _parser("history", "Stored events, newest first: a table, or NDJSON (every match) with --json.")
    parser.add_argument("--status", choices=("firing", "resolved"), help="only events of this status")
    parser.add_argument("--limit", type=int, help="at most this many events (default: the table 50, --json all)")
    args = parser.parse_args(argv)
    args.since = args.since or "6h"
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return _run(lambda: _history(args))


def _history(args: argparse.Namespace) -> None:
    api, params = _setup(args)
    if args.status:
        params.append(("status", args.status))
    if args.json:
        _ndjson(api, params, args.limit, sys.stdout.buffer)
        return
    limit = args.limit or 50
    events: list[dict[str, Any]] = []
    more = False
    cursor: str | None = None
    while len(events) < limit:
        page = api.json("/history", [*params, ("limit", str(min(PAGE, limit - len(events)))),
                                     *([("cursor", cursor)] if cursor else [])])  # fmt: skip
        events += page["items"]
        cursor = page["next"]
        if not cursor:
            break
    more = cursor is not None
    print(events_table(events, _width()))
    if more:
        print("… more in range: --limit N for more, or --json for every match", file=sys.stderr)


def _ndjson(api: Api, params: list[tuple[str, str]], limit: int | None, out: IO[bytes]) -> None:
    """Every match as the server streams it; a stream that ends early (its time limit) is resumed from its cursor."""
    from tqdm import tqdm

    sent = 0
    cursor: str | None = None
    # A bar only for a person watching a command that writes to a file or a pipe.
    with tqdm(unit=" events", disable=None if not sys.stdout.isatty() else True, file=sys.stderr) as bar:
        while True:
            query = [*params, ("format", "ndjson"), *([("cursor", cursor)] if cursor else [])]
            cursor = None
            with api.open("/history", query) as resp:
                for line in _lines(resp):
                    item = orjson.loads(line)
                    if "error" in item:  # the stream's last line when it ended early
                        cursor = item.get("next")
                        if cursor is None:
                            raise CliError(f"the stream ended early: {item['error']}", EX_UNAVAILABLE)
                        break
                    out.write(line + b"\n")
                    sent += 1
                    bar.update()
                    if limit is not None and sent >= limit:
                        out.flush()
                        return
            if cursor is None:
                out.flush()
                return


def _lines(resp: Any) -> Iterator[bytes]:
    for raw in resp:
        line = raw.rstrip(b"\r\n")
        if line:
            yield line


def events_table(events: list[dict[str, Any]], width: int | None) -> str:
    rows = [
        (
            (e["receivedAt"] or "")[:19].replace("T", " "),
            e["status"],
            e["severity"] or "",
            e["labels"].get("alertname", ""),
            _labels(e["labels"]),
            str(e["duplicates"]),
            "yes" if e["flapping"] else "",
        )
        for e in events
    ]
    head = ("RECEIVED (UTC)", "STATUS", "SEVERITY", "ALERTNAME", "LABELS", "RESENDS", "FLAPPING")
    if not rows:
        return "no events in range"
    return table(head, rows, width, flexible=4, right=(5,)) + f"\n{len(rows)} events, newest first"


# ---- report ------------------------------------------------------------------------------------------------------


def cmd_report(argv: list[str]) -> int:
    parser = _parser("report", "Totals, noisiest and flapping alerts, MTTR: tables, or /report's JSON with --json.")
    parser.add_argument("--top", type=int, default=10, help="length of each ranking (1-100, default 10)")
    parser.add_argument("--bucket", choices=("1h", "1d"), help="the time series' step (with --json)")
    args = parser.parse_args(argv)
    args.since = args.since or "24h"
    return _run(lambda: _report(args))


def _report(args: argparse.Namespace) -> None:
    api, params = _setup(args)
    params.append(("top", str(args.top)))
    if args.bucket:
        params.append(("bucket", args.bucket))
    report = api.json("/report", params)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
        return
    print(report_text(report, _width()))


def report_text(r: dict[str, Any], width: int | None) -> str:
    m = r["mttr_seconds"]
    out = [
        f"{r['since']} → {r['until']}",
        f"events {r['total_events']}  alerts {r['unique_alerts']}  resends suppressed {r['duplicates_suppressed']}  "
        f"flapping events {r['flapping_events']}",
        f"MTTR mean {_duration(m['overall'])}  p50 {_duration(m['p50'])}  p90 {_duration(m['p90'])}  "
        f"over {m['episodes']} resolved episodes",
        "",
        "Noisiest alerts (events + resends)",
    ]
    noisy = [(str(a["events"]), str(a["duplicates"]), str(a["flapping_events"]), a["alertname"], _labels(a["labels"]))
             for a in r["top_alerts"]]  # fmt: skip
    out.append(table(("EVENTS", "RESENDS", "FLAPPING", "ALERTNAME", "LABELS"), noisy, width, 4, (0, 1, 2))
               if noisy else "  none")  # fmt: skip
    out += ["", "Flapping alerts"]
    flapping = [(str(a["flapping_events"]), str(a["transitions"]), a["alertname"], _labels(a["labels"]))
                for a in r["flapping_alerts"]]  # fmt: skip
    out.append(table(("FLAPPING", "EVENTS", "ALERTNAME", "LABELS"), flapping, width, 3, (0, 1)) if flapping
               else "  none")  # fmt: skip
    out += ["", "MTTR by alertname"]
    mttr = [(a["alertname"], str(a["episodes"]), _duration(a["mttr_seconds"]), _duration(a["p50_seconds"]),
             _duration(a["p90_seconds"])) for a in m["by_alertname"]]  # fmt: skip
    out.append(table(("ALERTNAME", "EPISODES", "MEAN", "P50", "P90"), mttr, width, 0, (1, 2, 3, 4)) if mttr
               else "  none")  # fmt: skip
    return "\n".join(out)


# ---- shared -----------------------------------------------------------------------------------------------------


def table(head: Sequence[str], rows: Sequence[Sequence[str]], width: int | None, flexible: int,
          right: Sequence[int] = ()) -> str:  # fmt: skip
    """Aligned columns; on a terminal (`width`) the `flexible` column is cut to fit, with an ellipsis."""
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    if width is not None:
        fixed = sum(w for i, w in enumerate(widths) if i != flexible) + 2 * (len(head) - 1)
        widths[flexible] = max(len(head[flexible]), min(widths[flexible], width - fixed))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if len(cell) > widths[i]:
                cell = cell[: widths[i] - 1] + "…"
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return "\n".join([line(head), *(line(r) for r in rows)])


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _width() -> int | None:
    """The terminal's width, or None when the output goes elsewhere (nothing cut)."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _run(command: Any) -> int:
    try:
        command()
    except CliError as exc:
        print(f"alert-history: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()
    except KeyboardInterrupt:
        return 130
    return EX_OK
