"""Each target gets the body and headers its service documents, from a real worker: Slack's incoming webhook a
Block Kit message, PagerDuty's Events API v2 a trigger then a resolve with the same dedup_key, a generic webhook
Alertmanager's webhook v4 body. Only the targets whose matchers hold get an event."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.services import Endpoints
from tests.agents.publish.targets import TargetServer, notify, produce_notify, resolved, rules_env
from tests.fixtures import Worker, eventually, unique

PUBLIC = "https://alert-history.example.com"


async def test_each_target_gets_its_documented_body(
    make_worker: Callable[..., Worker], endpoints: Endpoints, tmp_path: Path
) -> None:
    slack, pager, hook = TargetServer(), TargetServer(), TargetServer()
    for server in (slack, pager, hook):
        await server.start()
    pager.default.status, pager.default.body = 202, '{"status":"success","message":"Event processed"}'
    run = unique()
    routing_key = "R" + unique("key")[:31]
    targets = [
        {"name": "slack-sre", "type": "slack", "url_env": f"SLACK_URL_{run}", "match": ['team="sre"']},
        {"name": "pager", "type": "pagerduty", "routing_key_env": f"PD_KEY_{run}", "url": f"{pager.url}/v2/enqueue",
         "match": ['severity="critical"']},
        {"name": "audit", "type": "webhook", "url": f"{hook.url}/hook"},
    ]  # fmt: skip
    worker = make_worker(env=rules_env(
        endpoints, tmp_path, targets,
        {f"SLACK_URL_{run}": f"{slack.url}/services/T000/B000/XXXXXXXX", f"PD_KEY_{run}": routing_key},
        public_url=PUBLIC,
    ))  # fmt: skip
    await worker.wait_ready()
    labels = {"alertname": "DiskFull", "instance": "db1:9100", "job": "node", "severity": "critical", "team": "sre"}
    firing = notify(labels, annotations={"summary": "Disk <full> & more"}, recommendations=["Grow the volume"])
    fp, starts = firing["event"]["fingerprint"], firing["event"]["startsAt"]
    resolve = resolved(firing)
    warning = notify({"alertname": "Slow", "severity": "warning", "team": "db"})  # only audit matches
    await produce_notify(worker.endpoints.kafka_brokers, f"{worker.topic}-notify", [firing, resolve, warning])

    async def arrived() -> bool:
        return len(slack.received) == 2 and len(pager.received) == 2 and len(hook.received) == 3

    await eventually(arrived, timeout=60, what="2 Slack, 2 PagerDuty and 3 webhook requests")
    for server in (slack, pager, hook):
        assert all(r.headers["Content-Type"] == "application/json" for r in server.received)
        assert all(r.headers["User-Agent"].startswith("alert-history") for r in server.received)
    timeline = f"{PUBLIC}/alerts/{fp}/history"
    generator = "http://prometheus:9090/graph?g0.expr=up"

    assert [r.path for r in slack.received] == ["/services/T000/B000/XXXXXXXX"] * 2
    assert slack.received[0].body == {
        "text": "[FIRING] DiskFull: Disk <full> & more",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "FIRING: DiskFull"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "Disk &lt;full&gt; &amp; more"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": "*Status*\nfiring"}, {"type": "mrkdwn", "text": "*Severity*\ncritical"},
                {"type": "mrkdwn", "text": f"*Started*\n{starts}"}]},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Labels*\n`alertname=DiskFull` "
             "`instance=db1:9100` `job=node` `severity=critical` `team=sre`"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Recommendations*\n• Grow the volume"}},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Timeline"}, "url": timeline},
                {"type": "button", "text": {"type": "plain_text", "text": "Source"}, "url": generator}]},
        ],
    }  # fmt: skip
    assert slack.received[1].body["blocks"][0]["text"]["text"] == "RESOLVED: DiskFull"
    assert {"type": "mrkdwn", "text": "*Ended*\n2026-11-24T10:05:00.000Z"} in slack.received[1].body["blocks"][2][
        "fields"
    ]

    assert [r.path for r in pager.received] == ["/v2/enqueue"] * 2
    assert pager.received[0].body == {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": fp,
        "payload": {
            "summary": "[FIRING] DiskFull: Disk <full> & more", "source": "db1:9100", "severity": "critical",
            "timestamp": starts, "component": "node",
            "custom_details": {"labels": labels, "annotations": {"summary": "Disk <full> & more"}, "fingerprint": fp,
                               "event_id": firing["event"]["id"], "startsAt": starts, "flapping": False,
                               "recommendations": ["Grow the volume"]},
        },
        "client": "alert-history", "client_url": timeline,
        "links": [{"href": timeline, "text": "Timeline (alert-history)"}, {"href": generator, "text": "Source"}],
    }  # fmt: skip
    assert pager.received[1].body == {"routing_key": routing_key, "event_action": "resolve", "dedup_key": fp}

    assert [r.path for r in hook.received] == ["/hook"] * 3
    by_status = [r.body for r in hook.received if r.body["alerts"][0]["fingerprint"] == fp]
    assert by_status[0] == {
        "version": "4", "groupKey": '{}:{alertname="DiskFull", instance="db1:9100", job="node", '
                                   'severity="critical", team="sre"}',
        "truncatedAlerts": 0, "status": "firing", "receiver": "audit", "groupLabels": labels, "commonLabels": labels,
        "commonAnnotations": {"summary": "Disk <full> & more"}, "externalURL": PUBLIC,
        "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": "Disk <full> & more"},
                    "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": generator,
                    "fingerprint": fp}],
    }  # fmt: skip
    assert by_status[1]["status"] == "resolved" and by_status[1]["alerts"][0]["endsAt"] == "2026-11-24T10:05:00.000Z"
    worker.stop()
    for server in (slack, pager, hook):
        await server.stop()

