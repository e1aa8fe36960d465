import orjson
import pytest

from agents.ingest import Rejected, decode, derive_status, misplaced, owner_partition
from app.records import Position
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
    e = decode(msg(labels={"a": "b"}, fingerprint="00000000000000ff", status="resolved"), POS)
    assert (e.fingerprint, e.status) == ("00000000000000ff", "resolved")


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
        (msg(labels={"a": "nul\x00byte"}), "a: contains a NUL"),
    ],
)
def test_poison_is_rejected_with_a_reason_naming_the_field(raw: bytes, names: str) -> None:
    with pytest.raises(Rejected) as err:
        decode(raw, POS)
    assert names in err.value.reason


def test_owner_partition_is_kafkas_murmur2() -> None:
    # aiokafka's DefaultPartitioner is Java's murmur2: producers keyed by fingerprint land here.
    p = owner_partition("a813ef02442c2be9", 8)
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
