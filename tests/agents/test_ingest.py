from datetime import UTC, datetime

import orjson
import pytest

from agents.ingest import decode, derive_status, misplaced
from app.fingerprint import fingerprint
from app.partition import fingerprint_partition
from app.records import Position
from app.validation import Rejected
from tests.factories import T0_MS, at, event

POS = Position("alerts", 0, 7, T0_MS)


def msg(**fields: object) -> bytes:
    return orjson.dumps(fields)


def test_minimal_message_gets_fingerprint_status_and_start() -> None:
    e = decode(msg(labels={"alertname": "FpCheck", "instance": "a:1", "severity": "critical"}), POS)
    assert e.fingerprint == "a813ef02442c2be9"
    assert e.status == "firing"
    assert e.starts_at == at(0)  # missing startsAt: the message time, like Alertmanager's receive time


def test_alertmanager_times_nanoseconds_and_zero_end() -> None:
    e = decode(msg(labels={"a": "b"}, startsAt="2025-12-31T23:59:00.123456789Z", endsAt="0001-01-01T00:00:00Z"), POS)
    assert e.ends_at is None and e.status == "firing"
    assert e.starts_at.microsecond == 123456


def test_status_derived_from_ends_at() -> None:
    e = decode(msg(labels={"a": "b"}, startsAt="2025-12-31T23:00:00Z", endsAt="2025-12-31T23:30:00Z"), POS)
    assert e.status == "resolved"
    assert derive_status(at(10), at(5)) == "firing"  # endsAt in the future: still firing


def test_given_fingerprint_and_status_are_kept() -> None:
    e = decode(msg(labels={"a": "b"}, fingerprint="d2b371819297f98a", status="resolved"), POS)
    assert (e.fingerprint, e.status) == ("d2b371819297f98a", "resolved")


def test_a_fingerprint_that_is_not_the_labels_own_is_refused() -> None:
    # Else a producer could write into another alert's history.
    other = fingerprint({"alertname": "SomeoneElse"})
    with pytest.raises(Rejected) as err:
        decode(msg(labels={"alertname": "Mine"}, fingerprint=other), POS)
    assert err.value.field == "fingerprint"
    assert f"{other} is not the fingerprint of these labels (Alertmanager's is" in err.value.reason
    assert fingerprint({"alertname": "Mine"}) in err.value.reason


def test_zero_time_is_not_set_in_any_offset_and_times_are_kept_in_utc() -> None:
    e = decode(msg(labels={"a": "b"}, startsAt="0001-01-01T01:00:00+01:00", endsAt="0001-01-01T00:00:00"), POS)
    assert e.starts_at == at(0) and e.ends_at is None  # the zero instant: not set (startsAt: the message time)
    e = decode(msg(labels={"a": "b"}, startsAt="0001-01-01T00:00:00-01:00", endsAt="9999-12-31T22:00:00-01:00"), POS)
    assert e.starts_at == datetime(1, 1, 1, 1, tzinfo=UTC)
    assert e.ends_at == datetime(9999, 12, 31, 23, tzinfo=UTC)
    e = decode(msg(labels={"a": "b"}, startsAt="2026-01-01T00:00:00"), POS)  # no offset: read as UTC
    assert e.starts_at == datetime(2026, 1, 1, tzinfo=UTC)


DEEP = b"[" * 250 + b"]" * 250
NUL = "\x00"


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (b"not json", "not valid JSON"),
        (b"", "empty message"),
        (b"[1,2]", "object"),
        (msg(annotations={}), "labels"),
        (msg(labels={}), "labels"),
        (msg(labels={"a": 1}), "labels.a"),
        (msg(labels={"bad-name": "x"}), "invalid label name"),
        (msg(labels={"a": "b"}, startsAt="yesterday"), "startsAt"),
        (msg(labels={"a": "b"}, status="pending"), "status"),
        (msg(labels={"a": "b"}, fingerprint="XYZ"), "fingerprint"),
        # PostgreSQL holds no U+0000 in text or jsonb: refused wherever it would be stored, names too.
        (msg(labels={"a": f"nul{NUL}byte"}), "labels.a: contains a NUL"),
        (msg(labels={f"a{NUL}": "b"}), "labels: invalid label name 'a\\x00'"),
        (msg(labels={"a": "b"}, annotations={f"summary{NUL}": "x"}), "annotations: invalid annotation name"),
        (msg(labels={"a": "b"}, annotations={"summary": NUL}), "annotations.summary: contains a NUL"),
        (msg(labels={"a": "b"}, generatorURL=f"http://x/{NUL}"), "generatorURL: contains a NUL"),
        (msg(labels={"a": "b"}, source=NUL), "source: contains a NUL"),
        (msg(labels={"a": "b"}, receiver=NUL), "receiver: contains a NUL"),
        # A lone surrogate is no UTF-8 (nor storable): the JSON is refused.
        (b'{"labels": {"a": "\\ud800"}}', "not valid JSON"),
        # Times whose UTC instant is outside years 1-9999: Python cannot convert them.
        (msg(labels={"a": "b"}, startsAt="0001-01-01T00:00:00+01:00"), "startsAt: 0001-01-01T00:00:00+01:00 is out"),
        (msg(labels={"a": "b"}, endsAt="9999-12-31T23:30:00-01:00"), "endsAt: 9999-12-31T23:30:00-01:00 is outside"),
        (msg(labels={"a": "b"}, startsAt=12), "startsAt: must be an RFC 3339 time string"),
        # Limits: names by Alertmanager's rule and at most 1,024 characters; values; the small fields.
        (msg(labels={"a" * 9000: "b"}), "labels: label name 'aaaa"),
        (msg(labels={"a": "b"}, annotations={"a" * 1025: "b"}), "annotations: annotation name 'aaa"),
        (msg(labels={"a": "b"}, annotations={"runbook-url": "b"}), "annotations: invalid annotation name 'runbook-"),
        (msg(labels={"a": "b" * 8193}), "labels.a: String should have at most 8192"),
        (msg(labels={"a": "b"}, receiver="r" * 257), "receiver: String should have at most 256"),
        (msg(labels={"a": "b"}, source="s" * 257), "source: String should have at most 256"),
        (msg(labels={f"l{i}": "b" for i in range(257)}), "labels: Dictionary should have at most 256 items"),
        # Nested deeper than the decoder reads, in a field it otherwise ignores.
        (b'{"labels": {"a": "b"}, "extra": ' + DEEP + b"}", "nested too deeply"),
    ],
)
def test_poison_is_rejected_with_a_reason_naming_the_field(raw: bytes, names: str) -> None:
    with pytest.raises(Rejected) as err:
        decode(raw, POS)
    assert names in err.value.reason
    assert len(err.value.reason) < 300  # it goes into a header and a 4xx body: long inputs are cut


def test_a_fingerprints_partition_is_kafkas_murmur2() -> None:
    # aiokafka's DefaultPartitioner is Java's murmur2: producers keyed by fingerprint land here.
    p = fingerprint_partition("a813ef02442c2be9", 8)
    assert 0 <= p < 8
    assert misplaced(event(fingerprint="a813ef02442c2be9", partition=(p + 1) % 8), 8)
    assert not misplaced(event(fingerprint="a813ef02442c2be9", partition=p), 8)


def test_holes_are_found_against_stored_offsets_and_between_messages() -> None:
    from aiokafka.structs import ConsumerRecord

    from agents.history.holes import find_holes

    def ev(p: int, o: int) -> ConsumerRecord:
        return ConsumerRecord("alerts", p, o, 0, 1, None, b"{}", None, 0, 2, ())

    # p0 follows on from PostgreSQL's 10; p1 starts past its 5; p2 skips 21; p3 is unknown to PostgreSQL,
    # so it must start at 0 (a worker that left before storing anything may have committed it in Kafka).
    events = [ev(0, 10), ev(0, 11), ev(1, 7), ev(2, 20), ev(2, 22), ev(2, 23), ev(3, 100), ev(3, 101), ev(4, 0)]
    assert find_holes(events, {0: 10, 1: 5, 2: 20}) == {1: (5, 7), 2: (21, 22), 3: (0, 100)}
    # Replays below the stored offset are no hole; a redelivered offset is no hole either.
    assert find_holes([ev(0, 3), ev(0, 4), ev(0, 4), ev(0, 5)], {0: 5}) == {}


def test_the_bridge_check_remembers_valid_messages_only_and_a_bounded_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from app import validation

    monkeypatch.setattr(validation, "_checked", validation.OrderedDict())
    monkeypatch.setattr(validation, "CHECKED_MESSAGES", 2)
    values = [msg(labels={"alertname": f"Checked{i}"}) for i in range(3)]
    assert [validation.checked(v) for v in values] == [validation.parse(v).fingerprint for v in values]
    assert validation.checked(values[2]) == fingerprint({"alertname": "Checked2"})  # remembered: the same answer
    assert len(validation._checked) == 2  # the oldest went
    bad = msg(labels={"alertname": "x"}, generatorURL=NUL)
    for _ in range(2):  # a refusal is never remembered as valid
        with pytest.raises(Rejected, match="generatorURL: contains a NUL"):
            validation.checked(bad)
