"""The processes a bench run starts and watches: subprocesses with their logs, and their RSS and CPU time.

CPU time comes from `/proc/<pid>/stat` (Linux); where a process cannot be found or read, its figure is None
and the table shows n/a.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

REPO = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


class Proc:
    """A worker, a web node or the naive agent as a subprocess with its own settings and log file."""

    def __init__(self, module: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "worker", *(["--loglevel", "warn"] if module != "app.cli" else [])],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise SystemExit(f"bench: {self.proc.args!r} exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process (the worker is one process)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces): field 3 is [0]."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a process and of every child its main thread forked, live or exited.

    An exited child's time is in its parent's cutime/cstime once reaped, so the sum only grows as
    PostgreSQL's backends come and go."""
    fields = _stat(pid)
    if fields is None:
        return None
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])  # stat fields 14-17
    total = (utime + stime + cutime + cstime) / CLOCK_TICKS
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(cpu_s(int(child)) or 0.0 for child in children)


def listener_pid(address: str) -> int | None:
    """The local process listening on `host:port` (Kafka's broker), or None when it is elsewhere or unreadable."""
    host, _, port = address.rpartition(":")
    if host.strip("[]") not in LOCAL_HOSTS:
        return None
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()  # local address, remote, state (0A: listening), ..., inode
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == int(port):
                sockets.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if any(os.readlink(fd) in sockets for fd in (entry / "fd").iterdir()):
                    return int(entry.name)
            except OSError:
                continue  # gone, or another user's
    return None


async def postmaster_pid(db: asyncpg.Pool, database_url: str) -> int | None:
    """The PostgreSQL server's main process (its backends are its children), when it runs on this machine."""
    if (urlsplit(database_url).hostname or "localhost") not in LOCAL_HOSTS:
        return None
    backend = int(await db.fetchval("SELECT pg_backend_pid()"))
    fields = _stat(backend)
    if fields is None or _comm(backend) != "postgres":
        return None
    parent = int(fields[1])
    return parent if _comm(parent) == "postgres" else None


class CpuMeter:
    """CPU seconds of named processes, read together: a phase takes a reading at each end of what it times."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = dict(pids)

    def read(self) -> dict[str, float | None]:
        return {name: (cpu_s(pid) if pid else None) for name, pid in self.pids.items()}


def cpu_us_per(
    before: Mapping[str, float | None], after: Mapping[str, float | None], alerts: int
) -> dict[str, float | None]:
    """CPU µs per alert of each process between two readings."""
    out: dict[str, float | None] = {}
    for name, end in after.items():
        start = before.get(name)
        out[name] = None if start is None or end is None or alerts <= 0 else (end - start) * 1e6 / alerts
    return out
