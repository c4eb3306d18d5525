"""The recorder on a real SQLite store: batches, a failing store, the bound, close."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from receiver.events import EpisodeMeta, Event, EventKind
from receiver.history.recorder import HistoryRecorder
from receiver.store.sqlite.store import SqliteStore


def meta(fp: str = "f1", team: str = "ml") -> EpisodeMeta:
    return EpisodeMeta(fp, f"{fp}@1", "HighGPUCost", {"team": team}, "alertmanager", 1.0)


def event(at: float, fp: str = "f1", kind: EventKind = EventKind.RECEIVED) -> Event:
    return Event(at, fp, f"{fp}@1", kind, {"n": at})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.close()


async def kept(store: SqliteStore, fp: str = "f1") -> list[float]:
    return [e.at for t in await store.alert_timelines(fp) for e in t.events]


async def test_flush_writes_the_batch_with_the_first_meta(store: SqliteStore) -> None:
    recorder = HistoryRecorder(store)
    recorder.record(event(1.0), meta(team="first"))
    recorder.record(event(2.0), meta(team="second"))
    recorder.record(event(3.0, "f2"), meta("f2"))
    assert await kept(store) == []  # nothing written before a flush
    assert recorder.pending == 3
    assert await recorder.flush()
    assert recorder.pending == 0
    [timeline] = await store.alert_timelines("f1")
    assert timeline.meta == meta(team="first")
    assert [e.at for e in timeline.events] == [1.0, 2.0]
    assert await kept(store, "f2") == [3.0]


async def test_run_writes_every_interval_and_early_for_a_full_batch(store: SqliteStore) -> None:
    recorder = HistoryRecorder(store, flush_interval=0.05, max_batch=1000)
    task = asyncio.create_task(recorder.run())
    try:
        recorder.record(event(1.0), meta())
        await asyncio.wait_for(_until(lambda: recorder.pending == 0), 5.0)
        assert await kept(store) == [1.0]
    finally:
        await recorder.close(5.0)
        await task
    # A long interval: a full batch is written at once, not at the interval.
    recorder = HistoryRecorder(store, flush_interval=60.0, max_batch=3)
    task = asyncio.create_task(recorder.run())
    try:
        await asyncio.sleep(0)
        for at in (2.0, 3.0, 4.0):
            recorder.record(event(at))
        await asyncio.wait_for(_until(lambda: recorder.pending == 0), 5.0)
        assert await kept(store) == [1.0, 2.0, 3.0, 4.0]
    finally:
        await recorder.close(5.0)
        await task


async def test_a_failing_store_keeps_the_batch_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alert_router.history")
    store = SqliteStore(tmp_path / "state.db")  # not open: every write fails
    recorder = HistoryRecorder(store, max_batch=2)
    for at in (1.0, 2.0, 3.0):
        recorder.record(event(at), meta())
    assert not await recorder.flush()
    recorder.record(event(4.0))
    assert not await recorder.flush()
    assert recorder.pending == 4 and recorder.dropped == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "store fails" in warnings[0].getMessage()
    assert "not open" in warnings[0].__dict__["error"]
    await store.open()
    try:
        assert await recorder.flush()
        [timeline] = await store.alert_timelines("f1")
        assert timeline.meta == meta()
        assert [e.at for e in timeline.events] == [1.0, 2.0, 3.0, 4.0]
    finally:
        await store.close()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "history written again"
    ]


async def test_the_buffer_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    recorder = HistoryRecorder(store, max_batch=2, max_buffer=5)
    for at in range(1, 7):
        recorder.record(event(float(at)), meta())
    assert (recorder.pending, recorder.dropped) == (5, 1)
    # A failed batch goes back in front of the buffer, which stays within its bound.
    assert not await recorder.flush()
    recorder.record(event(7.0))
    recorder.record(event(8.0))
    assert (recorder.pending, recorder.dropped) == (5, 3)
    await store.open()
    try:
        assert await recorder.flush()
        assert await kept(store) == [4.0, 5.0, 6.0, 7.0, 8.0]
        # The meta outlived its dropped event.
        [timeline] = await store.alert_timelines("f1")
        assert timeline.meta == meta()
    finally:
        await store.close()


async def test_close_writes_what_is_left(store: SqliteStore) -> None:
    recorder = HistoryRecorder(store, flush_interval=60.0)
    task = asyncio.create_task(recorder.run())
    await asyncio.sleep(0)
    recorder.record(event(1.0), meta())
    recorder.record(event(2.0, kind=EventKind.RESOLVED))
    await recorder.close(5.0)
    await asyncio.wait_for(task, 5.0)
    assert await kept(store) == [1.0, 2.0]


async def test_close_gives_up_at_its_timeout_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "state.db")  # never opened
    recorder = HistoryRecorder(store, flush_interval=0.01)
    recorder.record(event(1.0), meta())
    await asyncio.wait_for(recorder.close(0.2), 5.0)
    assert recorder.pending == 1
    [line] = [r for r in caplog.records if "at shutdown" in r.getMessage()]
    assert line.__dict__["events"] == 1


async def _until(done: Callable[[], bool]) -> None:
    while not done():
        await asyncio.sleep(0.01)


async def test_deferred_events_are_made_at_the_flush_and_a_failing_maker_costs_only_its_own(
    store: SqliteStore,
) -> None:
    recorder = HistoryRecorder(store)
    made: list[str] = []

    def make() -> list[tuple[Event, EpisodeMeta | None]]:
        made.append("f1")
        return [(event(1.0), meta()), (event(2.0), None)]

    def broken() -> list[tuple[Event, EpisodeMeta | None]]:
        raise RuntimeError("a bug in a maker")

    recorder.record_later(make)
    recorder.record_later(broken)
    recorder.record(event(3.0, "f2"), meta("f2"))
    assert made == []  # nothing is made while the caller (a webhook) waits
    assert recorder.pending == 3
    assert await recorder.flush()
    assert made == ["f1"]
    assert await kept(store) == [1.0, 2.0]
    assert await kept(store, "f2") == [3.0]
    assert recorder.dropped == 1 and recorder.pending == 0


async def test_close_makes_and_writes_what_was_deferred(store: SqliteStore) -> None:
    recorder = HistoryRecorder(store, flush_interval=10.0)
    task = asyncio.create_task(recorder.run())
    recorder.record_later(lambda: [(event(5.0), meta())])
    await recorder.close(5.0)
    await asyncio.wait_for(task, 5.0)
    assert await kept(store) == [5.0]


async def test_a_big_deferred_batch_lets_the_event_loop_answer_while_it_is_made(
    store: SqliteStore,
) -> None:
    """One maker is a whole routing batch: the webhooks waiting on the same event loop are
    answered while its events are made, not after all of them."""
    recorder = HistoryRecorder(store)
    ticks = 0
    seen: list[int] = []

    async def other_work() -> None:  # a webhook's answer, say
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    def make() -> Iterator[tuple[Event, EpisodeMeta | None]]:
        for i in range(40):
            busy_until = time.perf_counter() + 0.0005  # about as long as one alert's events
            while time.perf_counter() < busy_until:
                pass
            seen.append(ticks)
            yield event(float(i)), meta() if i == 0 else None

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    try:
        recorder.record_later(make)
        assert await recorder.flush()
    finally:
        other.cancel()
    assert len(set(seen)) >= 10, seen  # the other task ran all along, not once per maker
    assert await kept(store) == [float(i) for i in range(40)]
