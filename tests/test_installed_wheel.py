"""The built wheel alone is a complete install: modules, migrations, static files, the CLI and a working worker.

The wheel is built once per session from this checkout as a release is (sdist, then the wheel from the sdist),
installed with its dependencies into a new venv in a temp dir, and run with the current directory outside the
checkout and no PYTHONPATH, so nothing of the repo can be imported by accident.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from app.services import KAFKA_VERSION, Endpoints
from tests.fixtures import Worker, eventually, free_port, unique, worker_env
from tests.web.test_webhook import am_alert, webhook

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "agents", "tables", "sinks", "web")  # the top-level packages pyproject.toml ships


def run(argv: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run to completion; a failure shows the command's output."""
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise AssertionError(f"{argv} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result  # type: ignore[no-any-return]


def checkout_files() -> dict[str, Path]:
    """What the wheel must hold (every file of the packages, the migrations), by its path in the wheel."""
    wanted = {}
    for top in PACKAGES:
        for path in (REPO / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                wanted[path.relative_to(REPO).as_posix()] = path
    for path in (REPO / "migrations").iterdir():
        if path.is_file():
            wanted[f"app/migrations/{path.name}"] = path
    return wanted


@dataclass(frozen=True)
class Installed:
    venv: Path
    cwd: Path  # outside the checkout

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def env(self, **settings: str) -> dict[str, str]:
        """This environment without PYTHONPATH or any ALERT_HISTORY_ setting, plus `settings`."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env = {k: v for k, v in env.items() if not k.startswith("ALERT_HISTORY_")}
        return {**env, **settings}

    def run(self, *argv: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return run([self.bin(argv[0]), *argv[1:]], cwd=self.cwd, env=self.env(**settings), timeout=180)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # No build isolation: the backend is a test dependency already installed, so no download per session.
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO], cwd=REPO, timeout=300)
    (built,) = out.glob("alert_history-*.whl")
    return built


def dependency_wheelhouse(wheel: Path) -> Path:
    """The wheel's dependencies as wheels, at the versions this venv runs; fetched once per set of requirements."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = sorted(line for line in zf.read(meta).decode().splitlines() if line.startswith("Requires-Dist:"))
    pins = run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"]).stdout
    key = hashlib.sha256("\n".join([sys.version, *requires, pins]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("ALERT_HISTORY_CACHE", Path.home() / ".cache" / "alert-history"))
    house = cache / "wheelhouse" / key
    if not house.is_dir():
        house.parent.mkdir(parents=True, exist_ok=True)
        work = house.parent / f"tmp-{uuid.uuid4().hex[:8]}"  # renamed into place only when complete
        (work / "dl").mkdir(parents=True)
        (work / "pins.txt").write_text(pins)
        try:
            run([sys.executable, "-m", "pip", "wheel", "-q", "-c", work / "pins.txt", "-w", work / "dl", wheel])
            for own in (work / "dl").glob("alert_history-*.whl"):
                own.unlink()
            if not house.is_dir():  # else a parallel session was quicker
                (work / "dl").rename(house)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return house


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    assert not root.resolve().is_relative_to(REPO), f"{root} must be outside the checkout"
    venv, cwd = root / "venv", root / "cwd"
    cwd.mkdir()
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    # This venv's pip installs into the new one: only the wheel and the cached dependencies (--no-index), without
    # byte-compiling every dependency (--no-compile: Python compiles what it imports).
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-compile"]
    run([*pip, "--no-index", "--find-links", dependency_wheelhouse(wheel), wheel], timeout=300)
    return Installed(venv, cwd)


def test_wheel_holds_every_module_migration_and_static_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    missing = sorted(set(checkout_files()) - names)
    assert not missing, (
        f"in the checkout but not in the wheel: {missing}; add the package to [tool.setuptools] packages "
        "(or the files to [tool.setuptools.package-data]) in pyproject.toml"
    )
    assert {n.split("/")[0] for n in names} == {*PACKAGES, dist_info}, "only our packages at the top level"
    assert "alert-history = app.cli:main" in entry_points


_PROBE = """
import json, sys
from importlib.resources import files
import agents, app, sinks, tables, web
import app.cli, app.faust_app, app.migrate, web.routes
def walk(d, prefix=""):
    for e in d.iterdir():
        yield from walk(e, f"{prefix}{e.name}/") if e.is_dir() else [f"{prefix}{e.name}"]
print(json.dumps({
    "files": {m.__name__: m.__file__ for m in (agents, app, sinks, tables, web, app.cli, web.routes)},
    "path": sys.path,
    "migrations": [m.name for m in app.migrate.discover()],
    "static": sorted(walk(files("web") / "static")) if (files("web") / "static").is_dir() else [],
    "pom": (files("app") / "kafka-pom.xml").read_text(),
}))
"""


def test_installed_package_runs_from_its_venv_alone(installed: Installed) -> None:
    probe = json.loads(installed.run("python", "-c", _PROBE).stdout)
    site = (installed.venv / "lib").resolve()
    for module, file in probe["files"].items():
        assert Path(file).resolve().is_relative_to(site), f"{module} imported from {file}, not from the venv"
    assert not any(Path(p).resolve().is_relative_to(REPO) for p in probe["path"] if p), probe["path"]
    assert probe["migrations"] == sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    static = REPO / "web" / "static"
    assert probe["static"] == sorted(p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file())
    assert probe["pom"] == (REPO / "app" / "kafka-pom.xml").read_text()
    assert "migrate" in installed.run("alert-history", "--help").stdout


@asynccontextmanager
async def empty_database(endpoints: Endpoints) -> AsyncIterator[str]:
    """A new database with nothing in it (scratch_database_url's are migrated already), dropped afterwards."""
    name = f"installed_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(endpoints.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield endpoints.database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def start_worker(installed: Installed, endpoints: Endpoints, workdir: Path) -> Worker:
    """`alert-history worker` of the installed package, as tests.fixtures.Worker runs the checkout's."""
    port = free_port()
    worker = Worker(endpoints, workdir, {**worker_env(endpoints, workdir), "ALERT_HISTORY_WEB_PORT": str(port)}, port)
    with worker.log_path.open("ab") as log:
        worker.proc = subprocess.Popen(
            [installed.bin("alert-history"), "worker"],
            cwd=installed.cwd,
            env=installed.env(**worker.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Worker.stop() signals the whole group
        )
    return worker


@pytest.fixture
def started() -> Iterator[list[Worker]]:
    workers: list[Worker] = []
    yield workers
    for w in workers:
        w.stop()


async def test_installed_migrate_then_worker_stores_and_answers(
    installed: Installed, endpoints: Endpoints, tmp_path: Path, started: list[Worker]
) -> None:
    shipped = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    async with empty_database(endpoints) as url:
        first = await asyncio.to_thread(installed.run, "alert-history", "migrate", ALERT_HISTORY_DATABASE_URL=url)
        assert first.stdout.strip() == f"migrations applied: {', '.join(shipped)}"
        again = await asyncio.to_thread(installed.run, "alert-history", "migrate", ALERT_HISTORY_DATABASE_URL=url)
        assert again.stdout.strip() == "migrations applied: none (up to date)"
        conn = await asyncpg.connect(url)
        try:
            recorded = await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")
            assert [r["name"] for r in recorded] == shipped
        finally:
            await conn.close()

        worker = start_worker(installed, dataclasses.replace(endpoints, database_url=url), tmp_path)
        started.append(worker)
        await worker.wait_ready()

        labels = {"alertname": "InstalledWheel", "run": unique()}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{worker.url}/webhook", json=webhook([am_alert(labels)])) as r:
                assert r.status == 202, await r.text()

            async def stored() -> list[dict[str, object]]:
                async with http.get(f"{worker.url}/history", params={"filter": f'run="{labels["run"]}"'}) as r:
                    assert r.status == 200, await r.text()
                    return (await r.json())["items"]  # type: ignore[no-any-return]

            items = await eventually(stored, timeout=60, what="the webhook alert in /history of the installed worker")
            # The dashboard and its files come from the package's data, not the checkout.
            for path, file, kind in (("/", "index.html", "text/html"), ("/static/app.js", "app.js", "text/javascript")):
                async with http.get(f"{worker.url}{path}") as r:
                    assert r.status == 200 and r.content_type == kind, path
                    assert await r.read() == (REPO / "web" / "static" / file).read_bytes()
        assert [(i["labels"], i["status"]) for i in items] == [(labels, "firing")]
        worker.stop()


def test_installed_package_fetches_the_kafka_jars(installed: Installed, tmp_path: Path) -> None:
    """`alert-history dev` from a wheel: no scripts/bootstrap.sh there, so the package fetches the broker itself."""
    fetch = "from app.services import kafka_libs; print(kafka_libs())"
    libs = Path(installed.run("python", "-c", fetch, ALERT_HISTORY_CACHE=str(tmp_path)).stdout.strip())
    assert libs == tmp_path / f"kafka-{KAFKA_VERSION}" / "libs"
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert [p.name for p in libs.parent.iterdir()] == ["libs"], "the temp dir of the fetch is gone"
