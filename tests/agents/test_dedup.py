"""The dedup decision as a table: (what the state holds, what arrives) → named decision."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.dedup import decide, decide_resend
from agents.state import FlapRule, advance, resent
from app.records import Decision
from tests.factories import T0_MS, event

WINDOW_MS = 3_600_000
FLAP = FlapRule(window_ms=1_800_000, threshold=4)


def state_after(*events):  # type: ignore[no-untyped-def]
    st = None
    for e in events:
        st = advance(st, e, decide(st, e, window_ms=WINDOW_MS), FLAP)
    return st


CASES = [
    ("first sighting", [], event(offset=1), Decision.FIRST_SEEN),
    ("resolved seen first (HA race)", [], event(status="resolved", offset=1), Decision.FIRST_SEEN),
    ("resend within window", [event(offset=1)], event(offset=2, seen=60), Decision.DUPLICATE),
    ("resend exactly at window", [event(offset=1)], event(offset=2, seen=3600), Decision.DUPLICATE),
    ("resend after window: as if never seen", [event(offset=1)], event(offset=2, seen=3601), Decision.FIRST_SEEN),
    ("older episode after window", [event(starts=100, offset=1, seen=100)], event(starts=0, offset=2, seen=3701),
     Decision.FIRST_SEEN),
    ("window counts from last sighting",
     [event(offset=1), event(offset=2, seen=3000)], event(offset=3, seen=6000), Decision.DUPLICATE),
    ("firing -> resolved", [event(offset=1)], event(status="resolved", offset=2, seen=10), Decision.TRANSITION),
    ("new episode", [event(offset=1)], event(starts=100, offset=2, seen=100), Decision.TRANSITION),
    ("late resend of older episode",
     [event(starts=100, offset=1, seen=100)], event(starts=0, offset=2, seen=101), Decision.LATE),
    ("firing overtaken by its own resolve",
     [event(status="resolved", offset=1)], event(status="firing", offset=2, seen=1), Decision.LATE),
    ("redelivered offset", [event(offset=5)], event(offset=5, seen=1), Decision.REPLAYED),
    ("older offset", [event(offset=5)], event(offset=3, seen=1), Decision.REPLAYED),
    ("re-keyed copy produced twice",
     [event(offset=1, origin="3/7")], event(offset=2, seen=1, origin="3/7"), Decision.REPLAYED),
]  # fmt: skip


@pytest.mark.parametrize(("name", "before", "incoming", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decision(name, before, incoming, expected) -> None:  # type: ignore[no-untyped-def]
    assert decide(state_after(*before), incoming, window_ms=WINDOW_MS) is expected


def test_duplicates_grow_counters_not_rows() -> None:
    st = state_after(event(offset=1), event(offset=2, seen=30), event(offset=3, seen=60))
    assert st is not None
    assert st.duplicates == 2
    assert st.last_seen_ms - st.received_ms == 60_000
    assert st.event_id == 1  # still the first row


def test_transition_opens_a_new_row_and_episode() -> None:
    st = state_after(event(offset=1), event(status="resolved", offset=2, seen=5), event(starts=100, offset=3, seen=100))
    assert st is not None
    assert (st.status, st.starts_at_ms - T0_MS, st.duplicates, st.event_id) == ("firing", 100_000, 0, 3)


def test_event_ids_carry_topic_partition_and_offset() -> None:
    from agents.state import event_id

    ids = {event_id(t, p, o) for t in (1, 2) for p in (0, 1023) for o in (0, 2**40 - 1)}
    assert len(ids) == 8 and all(0 < i < 2**63 for i in ids if i)


def test_flapping_after_threshold_transitions_within_window() -> None:
    flips = [
        event(starts=s, status=st, offset=i, seen=s + (5 if st == "resolved" else 0))
        for i, (s, st) in enumerate([(0, "firing"), (0, "resolved"), (60, "firing"), (60, "resolved")], 1)
    ]
    states = []
    st = None
    for e in flips:
        st = advance(st, e, decide(st, e, window_ms=WINDOW_MS), FLAP)
        states.append(st)
    assert [s.flapping for s in states] == [False, False, False, True]


def test_flapping_clears_when_transitions_age_out() -> None:
    flips = [(0, "firing"), (0, "resolved"), (60, "firing"), (60, "resolved")]
    events = [event(starts=s, status=st, offset=i, seen=s + 1) for i, (s, st) in enumerate(flips, 1)]
    calm = event(starts=4000, offset=10, seen=4000)  # > FLAP window later
    st = state_after(*events, calm)
    assert st is not None and not st.flapping and st.transitions_ms == [calm.seen_ms]


def test_flap_transitions_count_across_dedup_silence() -> None:
    # Dedup window 1 min, flap window 30 min: a sighting after 2 min of silence is first_seen, yet the
    # transitions before it still count towards flapping.
    flips = [(0, "firing", 0), (0, "resolved", 10), (130, "firing", 130), (130, "resolved", 140)]
    st, decisions, flags = None, [], []
    for i, (starts, status, seen) in enumerate(flips, 1):
        e = event(starts=starts, status=status, offset=i, seen=seen)
        decisions.append(decide(st, e, window_ms=60_000))
        st = advance(st, e, decisions[-1], FLAP)
        flags.append(st.flapping)
    assert decisions == [Decision.FIRST_SEEN, Decision.TRANSITION, Decision.FIRST_SEEN, Decision.TRANSITION]
    assert flags == [False, False, False, True]


def test_replayed_event_leaves_state_unchanged() -> None:
    st = state_after(event(offset=1), event(offset=2, seen=10))
    again = advance(st, event(offset=2, seen=10), Decision.REPLAYED, FLAP)
    assert again == st


# (status, startsAt s, seconds since the previous message): the bytes of a message are its status and startsAt.
sightings = st.lists(
    st.tuples(st.sampled_from(["firing", "resolved"]), st.sampled_from([0, 100, 200]), st.integers(0, 4000)),
    min_size=1,
    max_size=12,
)


@given(history=sightings, delay=st.integers(0, 4000))
def test_a_resend_is_decided_without_decoding_as_decoded(history, delay) -> None:  # type: ignore[no-untyped-def]
    """The pipeline decides a message byte-identical to the one the state last applied (same value_hash) with
    decide_resend and resent, never decoding it: that must be exactly what decide and advance make of it."""
    st_, seen = None, 0
    for offset, (status, starts, gap) in enumerate(history, 1):
        seen += gap
        e = event(status=status, starts=starts, offset=offset, seen=seen, value_hash=f"{status}|{starts}")
        st_ = advance(st_, e, decide(st_, e, window_ms=WINDOW_MS), FLAP)
    assert st_ is not None and st_.value_hash is not None
    status, starts = st_.value_hash.split("|")
    again = event(status=status, starts=int(starts), offset=len(history) + 1, seen=seen + delay,
                  value_hash=st_.value_hash)  # fmt: skip
    decided = decide(st_, again, window_ms=WINDOW_MS)
    assert decide_resend(st_, again.position, window_ms=WINDOW_MS) is decided
    if decided is Decision.DUPLICATE:
        assert resent(st_, again.position) == advance(st_, again, decided, FLAP)


def test_late_events_keep_the_digest_of_what_the_alerts_row_holds() -> None:
    st_ = state_after(event(status="resolved", offset=1, value_hash="r"), event(offset=2, seen=1, value_hash="f"))
    assert st_ is not None and st_.status == "resolved" and st_.value_hash == "r"  # the firing copy was late
