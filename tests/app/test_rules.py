"""The rules file: DESIGN.md's example parses whole; every error names the file, the line and what is wrong; the
`rules check` command exits 0 with a summary or 2 with the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import rules
from app.cli import main
from app.matchers import MatchOp

DESIGN_EXAMPLE = """\
classification:            # rules before the LLM: first match wins
  - match: ['alertname=~"Watchdog|InfoInhibitor"']
    severity: noise
filters:                   # first match wins; no match = allow
  - name: drop-noise
    match: ['severity="noise"']
    action: deny
  - name: hold-warnings    # publish only if still firing after `for`
    match: ['severity="warning"']
    action: delay
    for: 5m
targets:
  - {name: slack-sre, type: slack, url_env: SLACK_SRE_URL, match: ['team="sre"']}
  - {name: pager, type: pagerduty, routing_key_env: PD_ROUTING_KEY, match: ['severity="critical"']}
  - {name: audit, type: webhook, url: "http://audit.internal:8080/hook"}
"""


def test_the_design_example_parses_whole() -> None:
    r = rules.parse(DESIGN_EXAMPLE)
    (noise,) = r.classification
    assert noise.severity == "noise" and noise.matchers[0].op is MatchOp.RE
    assert noise.matches({"alertname": "InfoInhibitor"}) and not noise.matches({"alertname": "Watchdogs"})
    assert [(f.name, f.action.value, f.for_s) for f in r.filters] == [
        ("drop-noise", "deny", None), ("hold-warnings", "delay", 300.0)
    ]  # fmt: skip
    assert [(t.name, t.type, t.url, t.url_env, t.routing_key_env) for t in r.targets] == [
        ("slack-sre", "slack", None, "SLACK_SRE_URL", None),
        ("pager", "pagerduty", None, None, "PD_ROUTING_KEY"),
        ("audit", "webhook", "http://audit.internal:8080/hook", None, None),
    ]
    assert r.summary() == "1 classification rules, 2 filters (1 delaying), 3 targets"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("filters:\n  - name: a\n    action: delay\n", "f.yaml:2: filters[0]: action delay needs `for`"),
        ("filters:\n  - name: a\n    action: allow\n    for: 5m\n", "f.yaml:2: filters[0]: `for` applies to action"),
        ("filters:\n  - name: a\n    action: drop\n", "f.yaml:3: filters[0].action: Input should be 'allow'"),
        ("filters:\n  - name: a\n    action: delay\n    for: soon\n", "f.yaml:4: filters[0].for: must be a duration"),
        ("filters:\n  - {name: a, action: allow}\n  - {name: a, action: deny}\n", "f.yaml:1: filters: names must be "
                                                                                  "unique, 'a' is used twice"),
        ("classification:\n  - severity: info\n    match: ['a=~\"(\"']\n", "f.yaml:3: classification[0].match: [0]: "
                                                                           "bad matcher"),
        ("classification:\n  - match: ['a=\"b\"']\n", "f.yaml:2: classification[0]: a classification rule needs"),
        ("classification:\n  - match: []\n    severity: major\n", "f.yaml:3: classification[0].severity: Input "
                                                                  "should be 'critical', 'warning', 'info' or 'noise'"),
        ("targets:\n  - name: t\n    type: slack\n", "f.yaml:2: targets[0]: a slack target needs url or url_env"),
        ("targets:\n  - name: t\n    type: pagerduty\n", "f.yaml:2: targets[0]: a pagerduty target needs "
                                                         "routing_key_env"),
        ("targets:\n  - {name: t, type: webhook, url_env: 'X-Y'}\n", "f.yaml:2: targets[0].url_env: String should"),
        ("routes: []\n", "f.yaml:1: routes: Extra inputs are not permitted"),
        ("filters: [\n", "f.yaml:2: not valid YAML"),
        ("- a\n", "f.yaml:1: must be a mapping"),
    ],
)  # fmt: skip
def test_errors_name_the_line_and_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(rules.RulesError) as exc:
        rules.parse(text, "f.yaml")
    assert str(exc.value).startswith(error), str(exc.value)


@pytest.mark.parametrize(("value", "seconds"), [("5m", 300), ("1h30m", 5400), ("90s", 90), (45, 45), ("2h", 7200)])
def test_durations(value: object, seconds: float) -> None:
    assert rules.duration_s(value) == seconds


def test_an_empty_file_is_no_rules() -> None:
    assert rules.parse("") == rules.EMPTY and rules.parse("filters:\n") == rules.EMPTY


def test_rules_check_exits_0_with_a_summary_or_2_with_the_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(DESIGN_EXAMPLE)
    bad.write_text(DESIGN_EXAMPLE.replace("action: deny", "action: drop"))
    assert main(["rules", "check", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok: 1 classification rules, 2 filters (1 delaying), 3 targets\n"
    assert main(["rules", "check", str(bad)]) == 2
    assert f"{bad}:7: filters[0].action: Input should be 'allow', 'deny' or 'delay'" in capsys.readouterr().err
    assert main(["rules", "check", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read the rules file" in capsys.readouterr().err
