"""A SQLite file made before claims had owners is upgraded when opened for writing, and left
alone when opened read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from receiver.store.base import Claims, ReadOnlyStoreError
from receiver.store.sqlite.schema import SCHEMA
from receiver.store.sqlite.store import SqliteStore
from tests.store.test_contract import alert, route_all


def old_file(path: Path) -> None:
    """The schema as the first release wrote it: no `owner` columns."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.replace(",\n    owner TEXT NOT NULL DEFAULT ''", ""))
    conn.close()


def columns(path: Path, table: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


async def test_an_old_file_gains_owners_and_claims_work(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old_file(path)
    assert "owner" not in columns(path, "inbox") | columns(path, "outbox")
    store = SqliteStore(path)
    await store.open()
    try:
        await store.ingest([alert("m1"), alert("m2")], 100.0, 60)
        await route_all(store)
        [item, _] = await store.claim_outbox("slack", 10, 100.0, 10, owner="a")
        assert await store.renew("a", Claims(outbox=(item.id,)), 101.0, 10) == Claims()
    finally:
        await store.close()
    assert "owner" in columns(path, "inbox") and "owner" in columns(path, "outbox")


async def test_a_read_only_open_changes_no_schema(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old_file(path)
    store = SqliteStore(path, read_only=True)
    await store.open()
    try:
        assert await store.depths() == {"inbox": 0, "outbox": 0, "dead_letters": 0}
    finally:
        await store.close()
    assert "owner" not in columns(path, "inbox")


async def test_a_read_only_open_of_a_missing_file_is_empty_and_creates_none(
    tmp_path: Path,
) -> None:
    # `alert-router dead-letters list` before any router ran: nothing stored, nothing made.
    path = tmp_path / "missing" / "state.db"
    store = SqliteStore(path, read_only=True)
    await store.open()
    try:
        assert await store.dead_letters() == []
        assert await store.depths() == {"inbox": 0, "outbox": 0, "dead_letters": 0}
        with pytest.raises(ReadOnlyStoreError, match="read-only"):
            await store.replay_dead_letters(None, 0.0)
    finally:
        await store.close()
    assert not path.parent.exists()
