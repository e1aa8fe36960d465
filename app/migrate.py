"""Numbered SQL migrations, applied in order, tracked in `schema_migrations`, under an advisory lock.

Two workers starting together both call this; the lock makes the second wait and then find
nothing left to do. The SQL files are package data of `app.migrations` (the repo's top-level migrations/,
mapped by pyproject.toml), so an installed wheel migrates exactly as a checkout does.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg

from app.errors import AlertHistoryError

log = logging.getLogger(__name__)

_LOCK_KEY = 0x616C657274686973  # "alerthis": one advisory lock for all migrators
_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


class MigrationError(AlertHistoryError):
    """The shipped migrations are missing or misnamed: the install itself is broken."""


def discover(directory: Traversable | None = None) -> list[Migration]:
    directory = directory or files("app.migrations")
    found = []
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if not match:
            raise MigrationError(f"migration file {entry.name!r} in {directory} must be named NNN_snake_case.sql")
        found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    if not found:  # a wheel built without its package data would otherwise "migrate" nothing, silently
        raise MigrationError(
            f"no migration files in {directory}: this alert-history install is incomplete; "
            "reinstall it from a wheel built by `pip wheel` or `python -m build`"
        )
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number in {directory}")
    return sorted(found, key=lambda m: m.version)


async def migrate(database_url: str, directory: Traversable | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            return await _apply_pending(conn, discover(directory))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY, name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    applied = []
    for m in migrations:
        if m.version in done:
            continue
        async with conn.transaction():
            await conn.execute(m.sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
        log.info("migration applied", extra={"migration": m.name})
        applied.append(m.name)
    return applied
