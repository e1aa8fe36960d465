"""Generated alert streams for the model tests: the steps a producer takes, and the topic message of each.

Streams mix duplicates, HA copies, transitions, old episodes, interleaved fingerprints, producers that key by
something else or nothing, messages without fingerprint or status, poison, and pauses longer than the dedup
window. Shared by the pipeline's model test (a real worker) and the decider's (in-process).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from hypothesis import strategies as st

from app.fingerprint import fingerprint

send = st.fixed_dictionaries(
    {
        "alert": st.integers(0, 2),
        "status": st.sampled_from(["firing", "resolved", None]),
        "episode": st.integers(0, 2),
        "ends": st.sampled_from(["none", "past", "future"]),
        "key": st.sampled_from(["fingerprint", "fingerprint", "none", "other"]),
        "with_fingerprint": st.booleans(),
    }
).map(lambda s: ("send", s))
again = st.just(("again", None))  # the previous alert once more: a resend or an HA pair's copy
poison = st.sampled_from([("poison", b"not json"), ("poison", b'{"status": "firing"}'), ("poison", b'{"labels": {}}')])
pause = st.just(("pause", None))
# one_of draws its branches evenly: repeating one weights it.
step = st.one_of(send, send, send, again, again, poison, pause)


def _at_most_two_pauses(steps: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    out, pauses = [], 0
    for s in steps:
        pauses += s[0] == "pause"
        if s[0] != "pause" or pauses <= 2:
            out.append(s)
    return out


# Every stream starts with a send: the topic's code exists, and the rows compared are never all empty.
streams = st.tuples(send, st.lists(step, min_size=8, max_size=40)).map(lambda t: _at_most_two_pauses([t[0], *t[1]]))


def message(s: dict[str, Any], run: str, now: datetime) -> tuple[bytes | None, bytes]:
    """A `send` step's (key, value) on the topic."""
    labels = {"alertname": "ModelCheck", "run": run, "instance": f"host-{s['alert']}:9100"}
    fp = fingerprint(labels)
    starts = now - timedelta(hours=3 - s["episode"])
    ends = {"none": None, "past": starts + timedelta(minutes=5), "future": now + timedelta(hours=1)}[s["ends"]]
    body: dict[str, Any] = {"labels": labels, "startsAt": starts.isoformat(timespec="milliseconds")}
    if ends is not None:
        body["endsAt"] = ends.isoformat(timespec="milliseconds")
    if s["status"] is not None:
        body["status"] = s["status"]
    if s["with_fingerprint"]:
        body["fingerprint"] = fp
    key = {"fingerprint": fp.encode(), "none": None, "other": f"other-{s['alert']}".encode()}[s["key"]]
    return key, orjson.dumps(body)
