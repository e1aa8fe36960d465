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
