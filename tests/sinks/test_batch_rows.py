"""A batch of outcomes collapsed to the rows the sink writes: resends only touch their alert's last sighting."""

from agents.dedup import decide
from agents.state import FlapRule, advance, resent
from app.records import Decision, Outcome
from sinks.postgres import BatchRows
from tests.factories import event

FLAP = FlapRule(window_ms=1_800_000, threshold=4)


def test_resends_alone_touch_the_alert_and_count_on_its_row() -> None:
    first = event(offset=1, value_hash="h")
    st0 = advance(None, first, decide(None, first, window_ms=60_000), FLAP)
    later = event(offset=2, seen=30).position
    st1 = resent(st0, later)
    rows = BatchRows.build([Outcome(first.fingerprint, later, Decision.DUPLICATE, st1)])
    assert rows.inserts == {} and rows.alerts == {}
    assert rows.counters == {st0.event_id: (1, rows.touches[first.fingerprint], rows.counters[st0.event_id][2])}
    assert rows.touches[first.fingerprint] == later.timestamp_ms
    assert rows.stored == {st0.event_id: 0}  # what its row held before the batch, for the store to check


def test_the_stored_counter_is_the_one_before_the_batchs_first_resend() -> None:
    first = event(offset=1, value_hash="h")
    st0 = advance(None, first, decide(None, first, window_ms=60_000), FLAP)
    st1 = resent(st0, event(offset=2, seen=10).position)  # stored in an earlier batch: the row holds 1
    p2, p3 = event(offset=3, seen=20).position, event(offset=4, seen=30).position
    st2 = resent(st1, p2)
    st3 = resent(st2, p3)
    rows = BatchRows.build([Outcome(first.fingerprint, p2, Decision.DUPLICATE, st2),
                            Outcome(first.fingerprint, p3, Decision.DUPLICATE, st3)])  # fmt: skip
    assert rows.counters[st0.event_id][0] == 3
    assert rows.stored == {st0.event_id: 1}


def test_a_row_created_in_the_batch_has_no_stored_counter() -> None:
    e = event(offset=1, value_hash="h")
    st0 = advance(None, e, decide(None, e, window_ms=60_000), FLAP)
    later = event(offset=2, seen=30).position
    rows = BatchRows.build([Outcome(e.fingerprint, e.position, Decision.FIRST_SEEN, st0, e),
                            Outcome(e.fingerprint, later, Decision.DUPLICATE, resent(st0, later))])  # fmt: skip
    assert rows.counters == {} and rows.stored == {}


def test_an_alert_row_takes_the_decoded_event_and_the_final_state() -> None:
    e = event(offset=1, value_hash="h", annotations={"summary": "disk 91%"})
    st0 = advance(None, e, decide(None, e, window_ms=60_000), FLAP)
    later = event(offset=2, seen=30).position
    st1 = resent(st0, later)
    outcomes = [Outcome(e.fingerprint, e.position, Decision.FIRST_SEEN, st0, e), Outcome(e.fingerprint, later,
                Decision.DUPLICATE, st1)]  # fmt: skip
    rows = BatchRows.build(outcomes)
    assert rows.touches == {}
    assert list(rows.inserts) == [st0.event_id]
    assert rows.inserts[st0.event_id][11] == 1  # the resend counted on the row created in this batch
    alert = rows.alerts[e.fingerprint]
    assert alert[2] == {"summary": "disk 91%"}  # the decoded event's annotations
    assert alert[8] == later.timestamp_ms  # the final state's last sighting
