"""docker-compose.yml end to end on the image the Dockerfile builds: a webhook posted to the web node is in /history.

Needs a Docker engine (with Compose v2.24.4 or later, for `!override`); where `docker info` fails the test is
skipped, saying so: the only skip in the suite. Kafka, PostgreSQL and Redis here are the images compose names.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from testcontainers.compose import DockerCompose

from tests.fixtures import eventually, unique
from tests.web.test_webhook import am_alert, webhook

REPO = Path(__file__).resolve().parent.parent
TOKENS = ("ALERT_HISTORY_API_TOKEN", "ALERT_HISTORY_READ_TOKEN", "POSTGRES_PASSWORD")


def no_docker_engine() -> str | None:
    """Why there is no usable Docker engine, or None when `docker info` answers."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 30 s"
    if info.returncode != 0:
        return f"`docker info` failed: {(info.stderr.strip().splitlines() or ['no output'])[-1]}"
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DockerCompose, str, dict[str, str]]]:
    """The compose stack under a project name of its own, the web node on a free loopback port, its tokens and
    password generated (compose refuses to start without them); removed after."""
    missing = no_docker_engine()
    if missing:
        pytest.skip(f"no Docker engine: {missing}")
    workdir = tmp_path_factory.mktemp("compose")
    env = {name: secrets.token_hex(24) for name in TOKENS}
    (workdir / "test.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    override = workdir / "test.yml"
    override.write_text(
        f"name: alert-history-test-{uuid.uuid4().hex[:8]}\n"
        "services:\n"
        "  web:\n"
        '    ports: !override ["127.0.0.1::6066"]\n'  # not the host's 6066, which `make dev` may hold
    )
    compose = DockerCompose(
        REPO,
        compose_file_name=["docker-compose.yml", str(override)],
        build=True,
        wait=True,
        env_file=str(workdir / "test.env"),
    )
    try:
        compose.start()  # `up --build --wait`: returns when every healthcheck (the nodes' /readyz) passes
    except subprocess.CalledProcessError as exc:
        logs = _logs(compose)
        compose.stop()
        pytest.fail(f"docker compose up failed ({exc.returncode}):\n{exc.stderr.decode()[-3000:]}\n{logs}")
    try:
        host, port = compose.get_service_host_and_port("web", 6066)
        yield compose, f"http://{host or '127.0.0.1'}:{port}", env
    finally:
        compose.stop()


def _logs(compose: DockerCompose) -> str:
    try:
        out, err = compose.get_logs()
    except subprocess.CalledProcessError:
        return "(no logs)"
    return f"--- compose logs ---\n{(out + err)[-6000:]}"


@pytest.mark.timeout(1200)  # the first run builds the image and pulls Kafka, PostgreSQL and Redis
async def test_compose_stack_stores_a_webhook_alert_and_answers_history(
    stack: tuple[DockerCompose, str, dict[str, str]],
) -> None:
    compose, url, env = stack
    labels = {"alertname": "ComposeEndToEnd", "run": unique()}
    write = {"Authorization": f"Bearer {env['ALERT_HISTORY_API_TOKEN']}"}
    read = {"Authorization": f"Bearer {env['ALERT_HISTORY_READ_TOKEN']}"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/webhook", json=webhook([am_alert(labels)])) as r:
                assert r.status == 401, "the stack's API is open"
            async with http.post(f"{url}/webhook", json=webhook([am_alert(labels)]), headers=write) as r:
                assert r.status == 202, await r.text()

            async def stored() -> list[dict[str, Any]]:
                params = {"filter": f'run="{labels["run"]}"'}
                async with http.get(f"{url}/history", params=params, headers=read) as r:
                    assert r.status == 200, await r.text()
                    return (await r.json())["items"]  # type: ignore[no-any-return]

            items = await eventually(stored, timeout=120, what="the webhook alert in the web node's /history")
        assert [(i["labels"], i["status"]) for i in items] == [(labels, "firing")]

        # The image holds the installed package only, and its workers have already applied every migration.
        out, err, code = compose.exec_in_container(["alert-history", "migrate"], "web")
        assert (code, out.strip()) == (0, "migrations applied: none (up to date)"), err
        out, err, code = compose.exec_in_container(["python", "-c", "import app; print(app.__file__)"], "worker-1")
        assert code == 0 and "/site-packages/app/" in out, (out, err)
    except (AssertionError, subprocess.CalledProcessError) as exc:
        raise AssertionError(f"{exc}\n{_logs(compose)}") from None
