"""The rules file's targets: each one built with its secrets from the environment, or a ConfigError naming the
file, the target and what is wrong (never a secret's value)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.publish.targets import load
from app.errors import ConfigError
from app.services import Endpoints
from sinks.publishers.pagerduty import EVENTS_URL, PagerDuty
from sinks.publishers.slack import Slack
from sinks.publishers.webhook import Webhook
from tests.agents.publish.targets import rules_env
from tests.fixtures import Worker

GOOD = """
classification:          # the enrich branch's: left alone here
  - match: ['alertname=~"Watchdog"']
    severity: noise
targets:
  - {name: slack-sre, type: slack, url_env: SLACK_SRE_URL, match: ['team="sre"']}
  - {name: pager, type: pagerduty, routing_key_env: PD_ROUTING_KEY, match: ['severity="critical"'],
     delivery: {timeout_s: 5, breaker_failures: 3}}
  - {name: audit, type: webhook, url: "http://audit.internal:8080/hook"}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.yml"
    path.write_text(text)
    return str(path)


def test_the_designs_example_loads(tmp_path: Path) -> None:
    env = {"SLACK_SRE_URL": "https://hooks.slack.example/services/T1/B2/abcdefabcdef", "PD_ROUTING_KEY": "k" * 32}
    slack, pager, audit = load(write(tmp_path, GOOD), "https://ah.example", env)
    assert isinstance(slack, Slack) and slack.url == env["SLACK_SRE_URL"] and len(slack.matchers) == 1
    assert isinstance(pager, PagerDuty) and pager.url == EVENTS_URL and pager.routing_key == "k" * 32
    assert pager.delivery.timeout_s == 5 and pager.delivery.breaker_failures == 3 and pager.delivery.max_attempts == 5
    assert isinstance(audit, Webhook) and audit.matchers == () and audit.url == "http://audit.internal:8080/hook"
    assert load(None, None, env) == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("targets:\n  - {name: s, type: slack, url_env: NOT_SET_HERE}\n",
         "target 's': url_env names NOT_SET_HERE, which is not set in the environment"),
        ("targets:\n  - {name: p, type: pagerduty}\n", ":2: targets[0]: a pagerduty target needs routing_key_env"),
        ("targets:\n  - {name: w, type: webhook}\n", ":2: targets[0]: a webhook target needs url or url_env"),
        ("targets:\n  - {name: w, type: webhook, url: 'ftp://x/y'}\n", ":2: targets[0]: url must start with http://"),
        ("targets:\n  - {name: e, type: email, url: 'http://x/'}\n",
         ":2: targets[0].type: Input should be 'slack', 'pagerduty' or 'webhook'"),
        ("targets:\n  - {name: w, type: webhook, url: 'http://x/', match: ['a=~\"(\"']}\n",
         ":2: targets[0].match: [0]: bad matcher"),
        ("targets:\n  - {name: w, type: webhook, url: 'http://x/', delivery: {timeout_s: 0}}\n",
         ":2: targets[0].delivery.timeout_s: Input should be greater than 0"),
        ("targets:\n  - {name: w, type: webhook, url: 'http://x/', retries: 3}\n",
         ":2: targets[0].retries: Extra inputs are not permitted"),
        ("targets:\n  - {name: w, type: webhook, url: 'http://x/'}\n  - {name: w, type: webhook, url: 'http://y/'}\n",
         "names must be unique, 'w' is used twice"),
        ("targets:\n  - {name: w, type: webhook\n", ":3: not valid YAML"),
    ],
)  # fmt: skip
def test_a_bad_target_is_a_clear_error(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, text), None, {})
    assert error in str(raised.value), str(raised.value)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yml: cannot read the rules file"):
        load(str(tmp_path / "missing.yml"), None, {})


async def test_a_worker_with_an_unusable_rules_file_stops_at_start_saying_why(
    make_worker: Callable[..., Worker], endpoints: Endpoints, tmp_path: Path
) -> None:
    secret = "https://hooks.example/services/" + "s3cr3t" * 4
    bad = [{"name": "pager", "type": "pagerduty", "routing_key_env": "PD_KEY_NOT_SET_ANYWHERE"},
           {"name": "slack", "type": "slack", "url_env": "SLACK_URL_SET"}]  # fmt: skip
    worker = make_worker(env=rules_env(endpoints, tmp_path, bad, {"SLACK_URL_SET": secret}))
    assert worker.proc is not None
    code = await asyncio.to_thread(worker.proc.wait, 120)
    log = worker.log_path.read_text()
    assert code == 2, log[-2000:]
    assert "target 'pager': routing_key_env names PD_KEY_NOT_SET_ANYWHERE, which is not set" in log
    assert "Traceback" not in log and secret not in log
