"""Property: whatever a sender posts, the bridge never answers 5xx, every 2xx means each alert of it is stored,
and the worker never exits.

Bodies are generated hostile: text with NUL, lone surrogates (as JSON escapes, and as raw CESU bytes), names that
are long or not label names, times at and past years 1 and 9999 in every offset, without a zone, or garbage,
long and deeply nested values in fields nothing reads, numbers JSON cannot hold, and odd types anywhere.
They go to one real worker, on its own topic, through both write endpoints.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from app.fingerprint import fingerprint
from tests.fixtures import Worker, eventually, unique

CI = os.environ.get("CI") == "true"
EXAMPLES = int(os.environ.get("ALERT_HISTORY_FUZZ_EXAMPLES", "150"))
RUN = unique("F")

# Valid: what a 2xx must be given for, at the edges of what is allowed.
storable = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")  # no surrogate, no NUL
valid_text = st.one_of(st.text(storable, max_size=20), st.builds(lambda n: "é" * n, st.sampled_from([256, 8192])))
valid_name = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True), st.builds(lambda n: "n" * n, st.just(1024))
)
valid_labels = st.dictionaries(valid_name, valid_text, max_size=4)
# Hostile: text with NUL and lone surrogates, names too long or not label names, odd types.
short = st.text(storable, max_size=5)
hostile_text = st.one_of(
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "\udc00\ud800", "x" * 9000, "é" * 8193]),
    st.builds(lambda a, c, b: a + c + b, short, st.sampled_from(["\x00", "\ud800", "\udfff"]), short),
    st.text(st.characters(blacklist_categories=()), min_size=1, max_size=12),
)
odd = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.just([]), st.just({}))
text = st.one_of(hostile_text, hostile_text, odd)
name = st.one_of(st.builds(lambda n: "n" * n, st.sampled_from([1025, 9000])), hostile_text)
# A valid set with one bad name or one bad value in it, or no set at all.
label_set = st.one_of(
    st.builds(lambda s, k, v: {**s, k: v}, valid_labels, name, valid_text),
    st.builds(lambda s, k, v: {**s, k: v}, valid_labels, valid_name, text),
    st.dictionaries(valid_name, valid_text, min_size=257, max_size=260),
    odd,
)


def nest(levels: int, leaf: Any, lists: list[bool]) -> Any:
    for is_list in lists[:levels]:
        leaf = [leaf] if is_list else {"k": leaf}
    return leaf


def deep(low: int, high: int) -> st.SearchStrategy[Any]:
    """A value nested low-high levels deep (the decoder reads 200 in all; orjson writes 254)."""
    shape = st.lists(st.booleans(), min_size=300, max_size=300)  # list or object at each level
    return st.builds(nest, st.integers(low, high), st.sampled_from([1, "x", None]), shape)


offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-(24 * 60 - 1), 24 * 60 - 1))
west, east = (st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(*r)) for r in ((-1439, 0), (0, 1439)))
rfc3339 = st.sampled_from([datetime.isoformat, lambda d: d.isoformat().replace("+00:00", "Z")])
# Years 1 and 9999 where the UTC instant is still inside them (west of UTC at year 1, east at 9999), the zero time.
valid_time = st.one_of(
    st.builds(lambda d, tz, f: f(d.replace(tzinfo=tz)), st.just(datetime(1, 1, 1)), west, rfc3339),
    st.builds(lambda d, tz, f: f(d.replace(tzinfo=tz)), st.just(datetime(9999, 12, 31, 23, 59, 59)), east, rfc3339),
    st.sampled_from(["0001-01-01T00:00:00Z", "0001-01-01T01:00:00+01:00", "2026-11-24T10:00:00.123456789Z"]),
    st.builds(lambda d: d.isoformat(), st.datetimes(timezones=st.one_of(st.none(), offsets))),
)
EDGES = [datetime(1, 1, 1), datetime(9999, 12, 31, 23)]
bad_time = st.one_of(
    st.builds(lambda d, tz, f: f(d.replace(tzinfo=tz)), st.sampled_from(EDGES), offsets, rfc3339),
    st.sampled_from(["soon", "", "2026-02-30T00:00:00Z", "2026-11-24T10:00:00+24:00", "10000-01-01T00:00:00Z"]),
    odd,
)
finite = st.floats(allow_nan=False, allow_infinity=False)
# 0.8-1.1 MB: valid, and around the 1,000,000 bytes a Kafka message may have.
huge_annotations = st.builds(lambda n: {f"a{i}": "x" * 8000 for i in range(n)}, st.integers(100, 140))

ALERT = {  # field: (valid, hostile)
    "labels": (valid_labels, label_set),
    "annotations": (valid_labels, st.one_of(label_set, huge_annotations)),
    "startsAt": (valid_time, bad_time),
    "endsAt": (valid_time, bad_time),
    "generatorURL": (valid_text, text),
    "status": (st.sampled_from(["firing", "resolved"]), st.one_of(st.just("pending"), odd)),
    "fingerprint": (st.just("CORRECT"), st.one_of(st.from_regex(r"[0-9a-f]{16}", fullmatch=True), text)),
    "source": (st.text(storable, max_size=256), st.one_of(text, st.just("s" * 257))),
    "receiver": (st.text(storable, max_size=256), st.one_of(text, st.just("r" * 257))),
    "extra": (
        st.one_of(deep(100, 199), valid_text, st.integers(-(2**70), 2**70), finite),
        st.one_of(deep(200, 300), hostile_text, st.just(10**400), st.just(float("nan"))),
    ),
}
WEBHOOK = {
    "version": (st.just("4"), st.one_of(st.just("3"), text)),
    "receiver": (st.text(storable, max_size=256), st.one_of(text, st.just("r" * 300))),
    "status": (st.sampled_from(["firing", "resolved"]), text),
    "groupLabels": (valid_labels, label_set),
    "commonLabels": (valid_labels, label_set),
    "commonAnnotations": (valid_labels, label_set),
    "truncatedAlerts": (st.integers(0, 10), odd),
    "externalURL": (valid_text, st.one_of(text, deep(150, 300))),
}


def valid(fields: dict[str, tuple[Any, Any]], required: str) -> st.SearchStrategy[dict[str, Any]]:
    optional = {k: v for k, (v, _) in fields.items() if k != required}
    return st.fixed_dictionaries({required: fields[required][0]}, optional=optional)


WEBHOOK["alerts"] = (
    st.lists(valid(ALERT, "labels"), min_size=1, max_size=3),
    st.one_of(st.just([]), st.lists(odd, min_size=1, max_size=2), odd),
)


@st.composite
def webhook(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body, or one with one field of one alert, or of the body, made hostile: each tries one check."""
    body = draw(valid(WEBHOOK, "alerts"))
    where = draw(st.sampled_from(["alert", "body", "alert", "nowhere"]))
    fields, target = (ALERT, draw(st.sampled_from(body["alerts"]))) if where == "alert" else (WEBHOOK, body)
    if where != "nowhere":
        field = draw(st.sampled_from(sorted(fields)))
        target[field] = draw(fields[field][1])
        event(f"hostile: {where}.{field}")
    return body


def mine(body: dict[str, Any], example: int) -> dict[str, Any]:
    """Each alert of the body labelled as this example's (where its labels are an object), fingerprint filled in
    where it was drawn correct."""
    alerts = body.get("alerts")
    for i, a in enumerate(alerts if isinstance(alerts, list) else []):
        if isinstance(a, dict) and isinstance(a.get("labels"), dict):
            a["labels"] = {**a["labels"], "fuzz": RUN, "example": f"{example}-{i}"}
            if a.get("fingerprint") == "CORRECT":
                try:
                    a["fingerprint"] = fingerprint(a["labels"])
                except (AttributeError, TypeError, UnicodeEncodeError, orjson.JSONEncodeError):
                    pass  # labels that are no label set: it stays wrong
    return body


def encode(body: Any, raw_surrogates: bool) -> bytes:
    """Python's encoder writes what orjson refuses to: NaN, lone surrogates as \\ud800, or (raw) as CESU bytes."""
    if raw_surrogates:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
async def fuzz_worker(make_worker) -> Worker:  # type: ignore[no-untyped-def]
    w = make_worker()
    await w.wait_ready()
    return w


async def _stored(http: aiohttp.ClientSession, worker: Worker, alerts: list[dict[str, Any]]) -> None:
    """Each alert is in /history, with the labels it was sent with."""
    for a in alerts:
        fp = fingerprint(a["labels"])

        async def timeline(fp: str = fp) -> dict[str, Any] | None:
            async with http.get(f"{worker.url}/alerts/{fp}/history") as r:
                return await r.json() if r.status == 200 else None

        got = await eventually(timeline, timeout=30, what=f"alert {fp} of a 2xx in its timeline")
        assert got["labels"] == a["labels"]


example_counter = iter(range(10**9))
# The body posted when the worker was first found dead: every example after it fails too, so hypothesis's
# shrunk example says nothing; this one (or the 2xx just before it) is the one to look at, with the log.
FIRST_DEATH: list[str] = []


# pytest-timeout must never fire inside an example (see tests/agents/test_model.py).
@pytest.mark.timeout(max(300, EXAMPLES * 5))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,
    phases=[Phase.explicit, Phase.reuse, Phase.generate] if CI else list(Phase),
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
@given(body=webhook(), v2=st.booleans(), raw_surrogates=st.booleans())
async def test_no_5xx_and_every_2xx_is_stored(
    fuzz_worker: Worker, body: dict[str, Any], v2: bool, raw_surrogates: bool
) -> None:
    body = mine(body, next(example_counter))
    path, sent = ("/api/v2/alerts", body["alerts"]) if v2 else ("/webhook", body)
    data = encode(sent, raw_surrogates)
    try:
        assert not FIRST_DEATH, "the worker is dead"
        await _post_and_check(fuzz_worker, path, data)
        assert fuzz_worker.proc is not None and fuzz_worker.proc.poll() is None, "the worker exited"
    except (AssertionError, aiohttp.ClientError) as exc:
        if fuzz_worker.proc is not None and fuzz_worker.proc.poll() is not None:
            FIRST_DEATH[:] = FIRST_DEATH or [f"POST {path} {data[:3000]!r}"]
            raise AssertionError(
                f"the worker exited with {fuzz_worker.proc.returncode}, found after {FIRST_DEATH[0]}\n"
                f"{fuzz_worker.tail(30)}"
            ) from exc
        raise


async def _post_and_check(worker: Worker, path: str, data: bytes) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{worker.url}{path}", data=data, headers={"Content-Type": "application/json"}) as r:
            status, answer = r.status, await r.json()
        event(f"{path} {status} {answer.get('error', '').split(':')[0][:40]}")
        assert status < 500, (status, answer)
        assert status in (200, 202) or "error" in answer
        if status < 300:
            parsed = orjson.loads(data)  # as the bridge read it
            await _stored(http, worker, parsed["alerts"] if isinstance(parsed, dict) else parsed)
