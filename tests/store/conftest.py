"""The stores every contract test runs on: SQLite and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from receiver.store.base import Store
from receiver.store.redis.store import RedisStore
from receiver.store.sqlite.store import SqliteStore
from tests.fakes.redis import RedisServer

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory, so a test can open the same state twice (a restart, another replica)."""
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "state.db")
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return lambda: RedisStore(server.url)
    raise AssertionError(request.param)


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store()
    await s.open()
    yield s
    await s.close()
