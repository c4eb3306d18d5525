"""The SQLite writer's commits: which wait for the disk, and which store calls ask for it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from receiver.models import Alert, CostContext
from receiver.store.base import Planned
from receiver.store.sqlite.store import SqliteStore
from receiver.store.sqlite.writer import Writer
from tests.store.test_contract import alert

# PRAGMA synchronous answers a number: 1 is NORMAL, 2 is FULL.
NORMAL, FULL = 1, 2


def synchronous(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA synchronous").fetchone()[0])


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    w = Writer(str(tmp_path / "state.db"), 5.0)
    w.start()
    yield w
    w.stop()


async def test_a_commit_waits_for_the_disk_unless_it_holds_only_progress(writer: Writer) -> None:
    assert await writer.run(synchronous) == FULL
    assert await writer.run(synchronous, flush=False) == NORMAL
    assert writer.synchronous_in_force == "NORMAL"
    assert await writer.run(synchronous) == FULL
    assert writer.synchronous_in_force == "FULL"


async def test_a_group_with_one_operation_that_asks_for_the_disk_waits_for_it(
    writer: Writer,
) -> None:
    # The first operation holds the writer, so the next two arrive together: one group.
    busy, go = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        busy.set()
        go.wait(5)

    first = asyncio.ensure_future(writer.run(hold, flush=False))
    await asyncio.to_thread(busy.wait, 5)
    progress = asyncio.ensure_future(writer.run(synchronous, flush=False))
    webhook = asyncio.ensure_future(writer.run(synchronous))
    await asyncio.sleep(0.05)  # both queued behind `hold`
    go.set()
    await first

    assert await progress == FULL
    assert await webhook == FULL


async def test_a_file_kept_at_normal_stays_normal(tmp_path: Path) -> None:
    # The history's writer: no commit of it waits for the disk, asked or not.
    w = Writer(str(tmp_path / "history.db"), 5.0, synchronous="NORMAL")
    w.start()
    try:
        assert await w.run(synchronous) == NORMAL
        assert await w.run(synchronous, flush=False) == NORMAL
    finally:
        w.stop()


def planned(a: Alert) -> Planned:
    return Planned("slack", "r", 3600, True, a, CostContext(), 0.0)


async def test_the_store_flushes_webhooks_and_outcomes_and_not_its_progress(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    assert store._writer is not None
    commits = store._writer

    async def in_force(call: Awaitable[object]) -> str:
        await call
        return commits.synchronous_in_force

    try:
        # Acknowledged webhooks wait for the disk ...
        assert await in_force(store.ingest([alert("a1"), alert("a2")], 100.0, 60)) == "FULL"
        # ... the pipeline's progress does not ...
        [one, two] = await store.claim_inbox(10, 100.0, 60)
        assert commits.synchronous_in_force == "NORMAL"
        plans = [planned(one.alert), planned(two.alert)]
        assert await in_force(store.plan([one.id, two.id], plans, 100.0)) == "NORMAL"
        [sent, failed] = await store.claim_outbox("slack", 10, 100.0, 60)
        assert commits.synchronous_in_force == "NORMAL"
        # ... a delivery recorded does, and a retry time does not ...
        assert await in_force(store.delivered([sent], [None], 101.0)) == "FULL"
        assert await in_force(store.reschedule([failed], 150.0, "HTTP 500")) == "NORMAL"
        # ... and neither does housekeeping; a dead letter, an outcome, does.
        assert await in_force(store.purge(10_000.0, 60, 86_400)) == "NORMAL"
        [again] = await store.claim_outbox("slack", 10, 150.0, 60)
        assert await in_force(store.dead_letter([again], "HTTP 404", 160.0)) == "FULL"
    finally:
        await store.close()
