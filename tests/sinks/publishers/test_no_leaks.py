"""No target leaks a secret (in the spirit of Alertmanager's per-integration redaction tests): a worker whose
targets carry a secret URL (Slack, a webhook with a password and a token path) or a routing key (PagerDuty),
each answered 400 by a server that echoes all it got, or not answered at all; none of the secrets may appear in
a dead letter (headers or value), the worker's log at DEBUG, the deliveries table or /metrics."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from pathlib import Path

import aiohttp

from app.services import Endpoints
from tests.agents.publish.targets import TargetServer, dead_letters, notify, produce_notify, rules_env
from tests.fixtures import Worker, eventually, free_port, unique


async def test_no_target_leaks_a_url_secret_or_routing_key(
    make_worker: Callable[..., Worker], endpoints: Endpoints, db, tmp_path: Path, http: aiohttp.ClientSession
) -> None:  # type: ignore[no-untyped-def]
    echo = {name: await TargetServer().start() for name in ("slack", "pager", "hook")}
    for server in echo.values():
        server.echo = True
    slack_token = f"T{secrets.token_hex(4)}/B{secrets.token_hex(4)}/{secrets.token_hex(12)}"
    routing_key = secrets.token_hex(16)
    hook_password, hook_token = "pw-" + secrets.token_hex(6), secrets.token_hex(10)
    gone_token = secrets.token_hex(10)
    run = unique()
    env_names = {n: f"{n.upper()}_{run}" for n in ("slack", "pd", "hook", "gone")}
    secret_env = {
        env_names["slack"]: f"{echo['slack'].url}/services/{slack_token}",
        env_names["pd"]: routing_key,
        env_names["hook"]: f"http://alerts:{hook_password}@127.0.0.1:{echo['hook'].port}/in/{hook_token}",
        env_names["gone"]: f"http://127.0.0.1:{free_port()}/in/{gone_token}",  # nothing listens
    }
    once = {"max_attempts": 2, "first_delay_s": 0.05}
    targets = [
        {"name": "slack", "type": "slack", "url_env": env_names["slack"], "delivery": once},
        {"name": "pager", "type": "pagerduty", "routing_key_env": env_names["pd"], "url": f"{echo['pager'].url}/e",
         "delivery": once},
        {"name": "hook", "type": "webhook", "url_env": env_names["hook"], "delivery": once},
        {"name": "gone", "type": "webhook", "url_env": env_names["gone"], "delivery": once},
    ]  # fmt: skip
    worker = make_worker(env=rules_env(endpoints, tmp_path, targets, secret_env, log_level="DEBUG"))
    await worker.wait_ready()
    await produce_notify(worker.endpoints.kafka_brokers, f"{worker.topic}-notify",
                         [notify({"alertname": "Leak", "run": run, "severity": "critical"})])  # fmt: skip

    async def four() -> list[tuple[dict[str, str], dict[str, object]]]:
        letters = await dead_letters(worker)
        return letters if len(letters) == 4 else []

    letters = await eventually(four, timeout=60, what="a dead letter from each target")
    async with http.get(f"{worker.url}/metrics") as r:
        exposition = await r.text()
    errors = [r["error"] for r in await db.fetch("SELECT error FROM deliveries WHERE target = ANY($1)",
                                                  [t["name"] for t in targets])]  # fmt: skip
    worker.stop()
    log = worker.log_path.read_text(errors="replace")
    # Each echo did carry its secret back: the test provoked what it checks.
    assert routing_key in str(echo["pager"].received[0].body) and echo["hook"].received[0].headers["Authorization"]
    assert "HTTP 400: bad request to" in log and "ClientConnectorError" in log
    reasons = {h["alert-history-target"]: h["alert-history-error"] for h, _ in letters}
    assert "bad request to ***" in reasons["slack"] and "***" in reasons["pager"], reasons  # masked, not absent
    seen = [str(letters), exposition, log, str(errors)]
    basic = base64.b64encode(f"alerts:{hook_password}".encode()).decode()
    for secret in (slack_token, routing_key, hook_password, hook_token, gone_token, basic):
        for text in seen:
            assert secret not in text, f"a secret leaked:\n{text[:3000]}"
    for server in echo.values():
        await server.stop()
