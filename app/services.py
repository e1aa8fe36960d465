"""Embedded Kafka, PostgreSQL and Redis for `alert-history dev` and the test session.

Each is a real server process on a free loopback port and a private directory, or the one named
by ALERT_HISTORY_KAFKA_BROKERS / _DATABASE_URL / _REDIS_URL when set. No Docker needed.
"""

from __future__ import annotations

import atexit
import base64
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "3.9.1"


@dataclass(frozen=True)
class Endpoints:
    kafka_brokers: str
    database_url: str
    redis_url: str | None


class ServiceError(RuntimeError):
    """An embedded service did not start; the message says which and shows its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], bool], timeout_s: float, what: str, log: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log and log.exists() else ""
    raise ServiceError(f"{what} not ready after {timeout_s:.0f}s\n{tail}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class ServiceStack:
    workdir: Path | None = None
    kafka_brokers: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    want_redis: bool = True
    log: Callable[[str], None] = print
    kafka_version: str = "external"
    timings: dict[str, float] = field(default_factory=dict)
    _procs: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)  # (process, stop signal)
    _dirs: list[Path] = field(default_factory=list)
    _own_dir: bool = False

    @classmethod
    def from_env(cls, **kw: object) -> ServiceStack:
        env = os.environ.get
        return cls(
            kafka_brokers=env("ALERT_HISTORY_KAFKA_BROKERS") or None,  # type: ignore[arg-type]
            database_url=env("ALERT_HISTORY_DATABASE_URL") or None,
            redis_url=env("ALERT_HISTORY_REDIS_URL") or None,
            **kw,
        )

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Endpoints:
        if self.workdir is None:
            self.workdir, self._own_dir = Path(tempfile.mkdtemp(prefix="alert-history-")), True
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            if not self.kafka_brokers:
                self.kafka_brokers = self._timed("kafka", self._start_kafka)
            if not self.database_url:
                self.database_url = self._timed("postgres", self._start_postgres)
            if not self.redis_url and self.want_redis:
                self.redis_url = self._timed("redis", self._start_redis)
        except BaseException:
            self.stop()
            raise
        return Endpoints(self.kafka_brokers, self.database_url, self.redis_url)

    def stop(self) -> None:
        for proc, stop_signal in reversed(self._procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, stop_signal)
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                except ProcessLookupError:
                    pass
        self._procs.clear()
        for path in self._dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._dirs.clear()
        if self._own_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._own_dir = False

    def _timed(self, name: str, start: Callable[[], str | None]) -> str | None:
        began = time.monotonic()
        url = start()
        self.timings[name] = round(time.monotonic() - began, 2)
        return url

    def _spawn(
        self, argv: list[str], log: Path, user: str | None = None, stop_signal: int = signal.SIGTERM
    ) -> subprocess.Popen[bytes]:
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )  # own process group: stop() kills it whole
        self._procs.append((proc, stop_signal))
        return proc

    # --- Kafka -------------------------------------------------------------------------------
    def _start_kafka(self) -> str:
        if shutil.which("java") is None:
            raise ServiceError("Java 17 is needed for the embedded Kafka broker (or set ALERT_HISTORY_KAFKA_BROKERS)")
        began = time.monotonic()
        libs = kafka_libs()
        assert self.workdir is not None
        home = self.workdir / "kafka"
        shutil.rmtree(home, ignore_errors=True)  # embedded services start empty, like PostgreSQL's
        home.mkdir()
        port, controller = free_port(), free_port()
        props = home / "server.properties"
        props.write_text(_kafka_properties(home, port, controller))
        (home / "log4j.properties").write_text(_LOG4J.format(log=home / "server.log"))
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        java = ["java", f"-Dlog4j.configuration=file:{home / 'log4j.properties'}", "-cp", f"{libs}/*"]
        subprocess.run(
            # `--cluster-id=…`: a random id may start with "-", which as a separate argument reads as an option.
            [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c", str(props)],
            check=True,
            capture_output=True,
        )
        self._spawn([*java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "kafka.Kafka", str(props)], home / "stdout.log")
        _wait(lambda: _port_open(port) and _kafka_answers(port), 90, "Kafka", home / "server.log")
        self.kafka_version = KAFKA_VERSION
        self.log(f"started Apache Kafka {KAFKA_VERSION} (KRaft) on 127.0.0.1:{port} in {time.monotonic() - began:.1f}s")
        return f"127.0.0.1:{port}"

    # --- PostgreSQL --------------------------------------------------------------------------
    def _start_postgres(self) -> str:
        bindir = postgres_bindir()
        began = time.monotonic()
        # Its own directory under the system temp dir: the workdir may sit in a tree only root can enter.
        home = Path(tempfile.mkdtemp(prefix="alert-history-pg-"))
        self._dirs.append(home)
        user = _postgres_user()
        if user is not None:  # PostgreSQL refuses to run as root
            pw = pwd.getpwnam(user)
            os.chown(home, pw.pw_uid, pw.pw_gid)
        data = home / "data"
        self._run_as(
            user,
            [f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
            home / "initdb.log",
        )
        port = free_port()
        self._spawn(
            [
                f"{bindir}/postgres",
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(home),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            home / "server.log",
            user,
            stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for every client to leave
        )
        ready = [f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port), "-q"]
        _wait(lambda: subprocess.run(ready).returncode == 0, 60, "PostgreSQL", home / "server.log")
        subprocess.run(
            [
                f"{bindir}/psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-q",
                "-c",
                "CREATE DATABASE alert_history",
            ],
            check=True,
            capture_output=True,
        )
        self.log(
            f"started PostgreSQL {Path(bindir).parent.name} on 127.0.0.1:{port} in {time.monotonic() - began:.1f}s"
        )
        return f"postgresql://postgres@127.0.0.1:{port}/alert_history"

    def _run_as(self, user: str | None, argv: list[str], log: Path) -> None:
        argv = ["runuser", "-u", user, "--", *argv] if user else argv
        result = subprocess.run(argv, capture_output=True)
        if result.returncode != 0:
            log.write_bytes(result.stdout + result.stderr)
            raise ServiceError(f"{' '.join(argv)} failed:\n{result.stderr.decode()[-2000:]}")

    # --- Redis -------------------------------------------------------------------------------
    def _start_redis(self) -> str | None:
        server = shutil.which("redis-server")
        if server is None:
            self.log("redis: redis-server not installed; running without Redis (features degrade)")
            return None
        assert self.workdir is not None
        home = self.workdir / "redis"
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()
        port = free_port()
        self._spawn(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(home),
            ],
            home / "server.log",
        )
        try:
            _wait(lambda: _redis_ping(port), 20, "Redis", home / "server.log")
        except ServiceError as exc:
            self.log(f"redis: not started ({exc}); running without Redis")
            return None
        return f"redis://127.0.0.1:{port}/0"


def kafka_libs() -> Path:
    """The broker's jars in the cache; fetched from Maven Central with `mvn` the first time."""
    cache = Path(os.environ.get("ALERT_HISTORY_CACHE", Path.home() / ".cache" / "alert-history"))
    libs = cache / f"kafka-{KAFKA_VERSION}" / "libs"
    if not (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        _fetch_kafka_libs(libs)
    return libs


def _fetch_kafka_libs(libs: Path) -> None:
    """`mvn dependency:copy-dependencies` of the pom shipped as package data, so an installed wheel can do it."""
    if shutil.which("mvn") is None:
        raise ServiceError(
            f"the Apache Kafka {KAFKA_VERSION} jars are not in {libs} and Maven is not installed to fetch them: "
            "apt-get install maven (and Java 17), or set ALERT_HISTORY_KAFKA_BROKERS to a running broker"
        )
    print(f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven into {libs}", file=sys.stderr, flush=True)
    libs.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fetch-", dir=libs.parent))  # renamed into place only when complete
    try:
        pom = work / "pom.xml"
        pom.write_bytes(resources.files("app").joinpath("kafka-pom.xml").read_bytes())
        argv = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies"]
        argv += [f"-DoutputDirectory={work / 'libs'}", f"-Dkafka.version={KAFKA_VERSION}"]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-3000:]
            raise ServiceError(f"fetching the Kafka jars failed ({' '.join(argv)}):\n{output}")
        if not (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():  # else another process was quicker
            shutil.rmtree(libs, ignore_errors=True)
            (work / "libs").rename(libs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def postgres_bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found or int(found[-1].split("/")[4]) < 15:
        raise ServiceError(
            "PostgreSQL >= 15 server not found (apt-get install postgresql, or set ALERT_HISTORY_DATABASE_URL)"
        )
    return os.path.dirname(found[-1])


def _postgres_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return "postgres"


def _kafka_answers(port: int) -> bool:
    """A real protocol round trip (ApiVersions), not just an open port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            client = b"probe"
            body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big")
            body += len(client).to_bytes(2, "big") + client
            s.sendall(len(body).to_bytes(4, "big") + body)
            size = int.from_bytes(s.recv(4), "big")
            data = s.recv(size)
            return len(data) >= 6 and int.from_bytes(data[4:6], "big") == 0
    except OSError:
        return False


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _kafka_properties(home: Path, port: int, controller: int) -> str:
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={home / "data"}
num.partitions=8
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.flush.interval.messages=9223372036854775807
"""


_LOG4J = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
"""
