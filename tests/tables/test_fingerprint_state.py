"""The table's value codec: a JSON array of the state's fields; values written by earlier versions still decode."""

import dataclasses

import orjson

from app.records import FingerprintState
from tables.fingerprint_state import decode, encode

STATE = FingerprintState(
    event_id=1 << 50, status="resolved", starts_at_ms=1_764_624_000_123, received_ms=1_764_624_000_456,
    last_seen_ms=1_764_624_009_999, duplicates=3, transitions_ms=[1_764_624_000_456], flapping=True, offset=77,
    origins=["3/7"], value_hash="0123456789abcdef0123456789abcdef",
)  # fmt: skip


def test_round_trip_and_field_order() -> None:
    assert decode(encode(STATE)) == STATE
    # Every field, in declaration order: a field added to the state but not to encode() fails here.
    assert orjson.loads(encode(STATE)) == [getattr(STATE, f.name) for f in dataclasses.fields(FingerprintState)]


def test_objects_of_earlier_versions_decode() -> None:
    older = {k: v for k, v in dataclasses.asdict(STATE).items() if k != "value_hash"}
    assert decode(orjson.dumps(older)) == dataclasses.replace(STATE, value_hash=None)
    faust_record = {**older, "__faust": {"ns": "app.records.FingerprintState"}}
    assert decode(orjson.dumps(faust_record)) == dataclasses.replace(STATE, value_hash=None)
