"""Session fixtures: the real services start once; missing ones fail the session loudly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.services import Endpoints, ServiceStack

pytest_plugins = ["tests.fixtures"]


@pytest.fixture(scope="session")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """Kafka, PostgreSQL (migrated) and Redis: embedded, or those named by ALERT_HISTORY_* variables."""
    import asyncio

    from app.migrate import migrate

    stack = ServiceStack.from_env(workdir=tmp_path_factory.mktemp("services"))
    with stack as ep:
        asyncio.run(migrate(ep.database_url))
        yield ep
