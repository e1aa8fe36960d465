"""The publish decisions, pure: a table of what the ledger holds at a delivery's turn and what it decides."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from agents.publish.decider import Key, Outcome, Past, Recorded, Verdict, decide, targets_for
from app.matchers import parse_matchers
from app.rules import Delivery
from sinks.publishers.message import parse
from sinks.publishers.webhook import Webhook
from tests.agents.publish.targets import notify

T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
T1 = datetime(2026, 11, 24, 11, tzinfo=UTC)
FIRING = Key(100, "pager", "fp", "firing", T0)
RESOLVE = Key(101, "pager", "fp", "resolved", T0)
D, DL, S = Outcome.DELIVERED, Outcome.DEAD_LETTERED, Outcome.SUPERSEDED


@pytest.mark.parametrize(
    ("name", "key", "past", "replay", "verdict"),
    [
        ("nothing recorded: send", FIRING, Past(), False, Verdict.SEND),
        ("its success recorded: never again", FIRING, Past(own=D, newest_delivered=100), False,
         Verdict.ALREADY_DELIVERED),
        ("its success recorded: not on replay either", FIRING, Past(own=D), True, Verdict.ALREADY_DELIVERED),
        ("dead-lettered: the topic holds it", FIRING, Past(own=DL), False, Verdict.ALREADY_DEAD_LETTERED),
        ("dead-lettered, replayed: send", FIRING, Past(own=DL), True, Verdict.SEND),
        ("superseded stays so", FIRING, Past(own=S), True, Verdict.SUPERSEDED),
        ("a later event delivered: never back in time", FIRING, Past(newest_delivered=101), True,
         Verdict.SUPERSEDED),
        ("an earlier event delivered: send", RESOLVE, Past(newest_delivered=100,
                                                          previous=Recorded(100, "firing", T0, D)), False,
         Verdict.SEND),
        ("its firing dead-lettered: the resolve follows it", RESOLVE,
         Past(previous=Recorded(100, "firing", T0, DL)), False, Verdict.FOLLOWS_FIRING),
        ("its firing still dead on replay: follows again", RESOLVE,
         Past(own=DL, previous=Recorded(100, "firing", T0, DL)), True, Verdict.FOLLOWS_FIRING),
        ("a dead-lettered firing of another episode: send", RESOLVE,
         Past(previous=Recorded(100, "firing", T1, DL)), False, Verdict.SEND),
        ("a dead-lettered resolve before a new firing: send", FIRING,
         Past(previous=Recorded(99, "resolved", T1, DL)), False, Verdict.SEND),
        ("its firing superseded: send", RESOLVE, Past(previous=Recorded(100, "firing", T0, S)), False,
         Verdict.SEND),
    ],
)  # fmt: skip
def test_decide(name: str, key: Key, past: Past, replay: bool, verdict: Verdict) -> None:
    assert decide(key, past, replay=replay) is verdict, name


def test_event_ids_are_ordered_only_within_their_topic() -> None:
    key = Key((3 << 50) | (2 << 40) | 7, "t", "fp", "firing", T0)
    assert key.pipeline_ids == (3 << 50, (4 << 50) - 1)


def target(name: str, *match: str) -> Webhook:
    return Webhook(name, "http://127.0.0.1:1/x", Delivery(), [m for t in match for m in parse_matchers(t)], None)


def test_targets_match_labels_and_the_classifications_severity() -> None:
    every, sre, pager = target("all"), target("sre", 'team="sre"'), target("pager", 'severity="critical"')
    labels = {"alertname": "A", "team": "sre", "severity": "warning"}
    plain = parse(orjson.dumps(notify(labels)))
    assert [t.name for t in targets_for(plain, [every, sre, pager])] == ["all", "sre"]
    classified = notify(labels, mode="enriched", classification={"severity": "critical", "category": "saturation"})
    enriched = parse(orjson.dumps(classified))
    assert [t.name for t in targets_for(enriched, [every, sre, pager])] == ["all", "sre", "pager"]
