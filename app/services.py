"""Embedded Kafka, PostgreSQL and Redis for `alert-history dev` and the test session.

Each is a real server process on a free loopback port and a private directory, or the one named
by ALERT_HISTORY_KAFKA_BROKERS / _DATABASE_URL / _REDIS_URL when set. No Docker needed. Kafka is one
broker, or a real cluster of `kafka_nodes` KRaft brokers (fault tests); `process()` hands each server
process to whoever needs to freeze or kill it.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import psutil

from app.probes import kafka_answers, kafka_brokers, redis_ping
from app.topics import Replication

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


@dataclass(frozen=True)
class ServiceProcess:
    """One embedded server and every process under it (PostgreSQL's backends each lead a process group of
    their own), to freeze, thaw or kill -9 as a whole: what a hung or crashed server looks like to its clients."""

    name: str
    node: int
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers. A parent is stopped before its children are listed,
        so none forks a child that escapes; returns once all are stopped (a signal is delivered, not obeyed, when
        sent)."""
        level = [self._root()]
        while level:
            _send(level, signal.SIGSTOP)
            _wait(partial(_all_stopped, level), 10, f"{self.name} to stop", None)
            level = [child for proc in level for child in _children(proc)]

    def thaw(self) -> None:
        root = self._root()
        _send([*reversed(_children(root, recursive=True)), root], signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL of the whole tree, and reaped."""
        root = self._root()
        _send([root, *_children(root, recursive=True)], signal.SIGKILL)  # listed before the root's death orphans them
        self.proc.wait()

    @contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def _root(self) -> psutil.Process:
        if not self.alive:
            raise ServiceError(f"{self.name} node {self.node} (pid {self.proc.pid}) is not running")
        return psutil.Process(self.proc.pid)


def _children(proc: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
    try:
        return proc.children(recursive=recursive)
    except psutil.NoSuchProcess:
        return []


def _send(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass  # a backend that had just exited


def _all_stopped(procs: list[psutil.Process]) -> bool:
    return all(_stopped(p) for p in procs)


def _stopped(proc: psutil.Process) -> bool:
    try:
        return proc.status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@dataclass
class ServiceStack:
    workdir: Path | None = None
    kafka_brokers: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    want_redis: bool = True
    kafka_nodes: int = 1  # brokers of the embedded Kafka: 3 makes a real cluster, each broker also a controller
    log: Callable[[str], None] = print
    kafka_version: str = "external"
    timings: dict[str, float] = field(default_factory=dict)
    _procs: list[tuple[ServiceProcess, int]] = field(default_factory=list)  # (process, stop signal)
    _dirs: list[Path] = field(default_factory=list)
    _own_dir: bool = False

    @classmethod
    def from_env(cls, **kw: Any) -> ServiceStack:
        """ALERT_HISTORY_KAFKA_BROKERS, _DATABASE_URL, _REDIS_URL: those to use instead of starting them;
        ALERT_HISTORY_KAFKA_NODES: how many brokers the embedded Kafka has (1, or 3 for a cluster)."""
        env = os.environ.get
        nodes = env("ALERT_HISTORY_KAFKA_NODES") or "1"
        if not nodes.isdigit() or not 1 <= int(nodes) <= 9:
            raise ServiceError(f"ALERT_HISTORY_KAFKA_NODES: must be a number of brokers from 1 to 9, got {nodes!r}")
        return cls(
            kafka_brokers=env("ALERT_HISTORY_KAFKA_BROKERS") or None,
            database_url=env("ALERT_HISTORY_DATABASE_URL") or None,
            redis_url=env("ALERT_HISTORY_REDIS_URL") or None,
            kafka_nodes=int(nodes),
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
        assert self.kafka_brokers is not None and self.database_url is not None  # started above, or given
        return Endpoints(self.kafka_brokers, self.database_url, self.redis_url)

    def process(self, name: str, node: int = 1) -> ServiceProcess:
        """The running server `name` ("kafka", "postgres", "redis"); `node` is a Kafka broker's node.id (1…)."""
        for proc, _ in self._procs:
            if (proc.name, proc.node) == (name, node):
                return proc
        started = ", ".join(f"{p.name} node {p.node}" for p, _ in self._procs) or "none"
        raise ServiceError(f"this stack started no {name} node {node} (started: {started})")

    def stop(self) -> None:
        """Every server signalled at once (a frozen one thawed first, or its stop would wait for ever), then
        reaped within one shared deadline."""
        running = [(p, sig) for p, sig in reversed(self._procs) if p.alive]
        for proc, stop_signal in running:
            try:
                proc.thaw()
                os.killpg(proc.proc.pid, stop_signal)
            except (ProcessLookupError, ServiceError):
                pass
        deadline = time.monotonic() + 20
        for proc, _ in running:
            try:
                proc.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
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
        self,
        name: str,
        argv: list[str],
        log: Path,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        node: int = 1,
    ) -> ServiceProcess:
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )  # own process group: stop() kills it whole
        server = ServiceProcess(name, node, proc)
        self._procs.append((server, stop_signal))
        return server

    # --- Kafka -------------------------------------------------------------------------------
    def _start_kafka(self) -> str:
        """One broker, or a cluster of `kafka_nodes`: each broker also a controller (three voters), started
        together and waited for together, until every one answers and the metadata lists them all."""
        if shutil.which("java") is None:
            raise ServiceError("Java 17 is needed for the embedded Kafka broker (or set ALERT_HISTORY_KAFKA_BROKERS)")
        began = time.monotonic()
        libs = kafka_libs()
        assert self.workdir is not None
        n = self.kafka_nodes
        homes = [self.workdir / "kafka"] if n == 1 else [self.workdir / f"kafka-{i}" for i in range(1, n + 1)]
        nodes = [_KafkaNode(i, home, free_port(), free_port()) for i, home in enumerate(homes, 1)]
        voters = ",".join(f"{node.id}@127.0.0.1:{node.controller}" for node in nodes)
        replication = Replication.for_cluster(n)
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        formats = []
        for node in nodes:
            shutil.rmtree(node.home, ignore_errors=True)  # embedded services start empty, like PostgreSQL's
            node.home.mkdir()
            (node.home / "server.properties").write_text(_kafka_properties(node, voters, replication))
            (node.home / "log4j.properties").write_text(_LOG4J.format(log=node.home / "server.log"))
            # `--cluster-id=…`: a random id may start with "-", which as a separate argument reads as an option.
            formats.append(subprocess.Popen(
                [*_java(node, libs), "kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c",
                 str(node.home / "server.properties")],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        for node, fmt in zip(nodes, formats, strict=True):
            out, _ = fmt.communicate()
            if fmt.returncode != 0:
                raise ServiceError(f"formatting Kafka node {node.id} failed:\n{out.decode(errors='replace')[-2000:]}")
        heap = ["-Xms256m", "-Xmx768m"] if n == 1 else ["-Xms128m", "-Xmx512m"]
        for node in nodes:
            argv = [*_java(node, libs), *heap, "-XX:+UseG1GC", "kafka.Kafka", str(node.home / "server.properties")]
            self._spawn("kafka", argv, node.home / "stdout.log", node=node.id)
        ports = [node.port for node in nodes]
        _wait(
            lambda: all(kafka_answers(p) for p in ports) and kafka_brokers(ports[0]) == n,
            90 + 30 * (n - 1),
            f"Kafka ({n} broker{'s' * (n > 1)})",
            nodes[0].home / "server.log",
        )
        self.kafka_version = KAFKA_VERSION
        brokers = ",".join(f"127.0.0.1:{p}" for p in ports)
        what = "" if n == 1 else f", a cluster of {n}, replication {replication.factor}"
        self.log(f"started Apache Kafka {KAFKA_VERSION} (KRaft{what}) on {brokers} in {time.monotonic() - began:.1f}s")
        return brokers

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
            "postgres",
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
            "redis",
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
            _wait(lambda: redis_ping(port), 20, "Redis", home / "server.log")
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


@dataclass(frozen=True)
class _KafkaNode:
    id: int
    home: Path
    port: int
    controller: int


def _java(node: _KafkaNode, libs: Path) -> list[str]:
    return ["java", f"-Dlog4j.configuration=file:{node.home / 'log4j.properties'}", "-cp", f"{libs}/*"]


def _kafka_properties(node: _KafkaNode, voters: str, replication: Replication) -> str:
    # The broker's own topics (group offsets, transactions, auto-created ones) replicated as ours are.
    return f"""process.roles=broker,controller
node.id={node.id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={node.home / "data"}
num.partitions=8
offsets.topic.replication.factor={replication.factor}
offsets.topic.num.partitions=8
transaction.state.log.replication.factor={replication.factor}
transaction.state.log.min.isr={replication.min_insync}
default.replication.factor={replication.factor}
min.insync.replicas={replication.min_insync}
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
