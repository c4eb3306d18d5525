"""A SQLite file made before claims had owners is upgraded when opened for writing, and left
alone when opened read-only; the purges find their rows by index, a batch at a time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from receiver.store.base import Claims, ReadOnlyStoreError
from receiver.store.sqlite.schema import PURGE_LEDGER, PURGE_SEEN, SCHEMA
from receiver.store.sqlite.store import PURGE_BATCH, SqliteStore
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


def test_the_purges_search_their_index_and_scan_no_table() -> None:
    # The writer does one thing at a time: a purge that scanned the seen table or the
    # ledger (days of entries) held every webhook's commit behind it, every few seconds.
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    plans = {
        name: [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", (0.0, 1))]
        for name, sql in (("seen", PURGE_SEEN), ("ledger", PURGE_LEDGER))
    }
    conn.close()
    assert any("USING COVERING INDEX seen_received" in step for step in plans["seen"]), plans
    assert any("USING INDEX ledger_age" in step for step in plans["ledger"]), plans
    assert not [step for steps in plans.values() for step in steps if step.startswith("SCAN")]


async def test_a_purge_goes_on_past_one_batch_and_keeps_what_is_recent(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    old = PURGE_BATCH * 2 + 500
    store = SqliteStore(path)
    await store.open()
    try:
        for start in range(0, old, 500):
            await store.ingest([alert(f"old{i}") for i in range(start, start + 500)], 100.0, 60)
        await store.ingest([alert(f"new{i}") for i in range(10)], 990.0, 60)
        conn = sqlite3.connect(path)
        with conn:
            # Ledger entries as delivery writes them: last changed at 100 (old) or 990.
            conn.executemany(
                "INSERT INTO ledger VALUES ('slack', ?, ?, ?, NULL)",
                [(f"old{i}@T0", 100.0, None) for i in range(old)]
                + [(f"fired-early{i}@T0", 50.0, 990.0) for i in range(5)]
                + [(f"new{i}@T0", 990.0, None) for i in range(5)],
            )
        conn.close()
        await store.purge(1000.0, 60, 800)
        # The old copies are forgotten: each is accepted again inside a new window.
        again = await store.ingest([alert(f"old{i}") for i in (0, old // 2, old - 1)], 1000.0, 60)
        assert again.accepted == 3
        # The recent ones are still seen: duplicates.
        assert (await store.ingest([alert("new3")], 1000.0, 60)).duplicates == 1
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        seen = conn.execute("SELECT count(*) FROM seen").fetchone()[0]
        kept = sorted(row[0] for row in conn.execute("SELECT episode FROM ledger"))
    finally:
        conn.close()
    assert seen == 10 + 3
    # Kept: changed at 990 (a resolve counts as a change), however early it fired.
    assert kept == sorted(
        [f"fired-early{i}@T0" for i in range(5)] + [f"new{i}@T0" for i in range(5)]
    )
