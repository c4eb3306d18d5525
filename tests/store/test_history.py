"""The history contract every store passes (SQLite and Redis): episodes, their events in
order, the cap, the indexes, the destinations' states, purge, replicas and read-only."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from receiver.events import EpisodeMeta, Event, EventKind
from receiver.store.base import HISTORY_EVENTS_PER_EPISODE, ReadOnlyStoreError, Store
from receiver.store.sqlite.schema import SCHEMA
from receiver.store.sqlite.store import SqliteStore
from tests.store.conftest import StoreFactory
from tests.store.test_contract import _read_only


def meta(fp: str = "f1", started: float = 1000.0, **labels: str) -> EpisodeMeta:
    return EpisodeMeta(
        fingerprint=fp,
        episode=episode(fp, started),
        alertname=labels.pop("alertname", "HighGPUCost"),
        labels={"alertname": "HighGPUCost", "team": "ml", **labels},
        source="alertmanager",
        started_at=started,
    )


def episode(fp: str = "f1", started: float = 1000.0) -> str:
    return f"{fp}@{started:g}"


def event(
    at: float,
    kind: EventKind = EventKind.RECEIVED,
    *,
    fp: str = "f1",
    started: float = 1000.0,
    destination: str = "",
    **data: Any,
) -> Event:
    return Event(at, fp, episode(fp, started), kind, data, destination)


async def test_events_come_back_oldest_first_with_their_data(store: Store) -> None:
    m = meta()
    await store.record_history(
        [m],
        [
            event(1001.0, status="firing", duplicate=False, alert={"labels": {"a": "b"}}),
            event(1003.0, EventKind.DELIVERED, destination="slack", ref={"ts": "1.000100"}),
        ],
    )
    # A replica that flushed later recorded an earlier event: time order wins, and
    # events at the same time keep the order they were recorded in.
    await store.record_history(
        [],
        [
            event(1002.0, EventKind.ROUTED, route="gpu", matchers=['team="ml"']),
            event(1003.0, EventKind.DEDUP, destination="pd", reason="first_notification"),
        ],
    )
    [timeline] = await store.timelines([(m.fingerprint, m.episode)])
    assert timeline.meta == m
    assert timeline.last_at == 1003.0
    assert [(e.at, e.kind, e.destination) for e in timeline.events] == [
        (1001.0, EventKind.RECEIVED, ""),
        (1002.0, EventKind.ROUTED, ""),
        (1003.0, EventKind.DELIVERED, "slack"),
        (1003.0, EventKind.DEDUP, "pd"),
    ]
    first = timeline.events[0]
    assert (first.fingerprint, first.episode) == (m.fingerprint, m.episode)
    assert first.data == {"status": "firing", "duplicate": False, "alert": {"labels": {"a": "b"}}}
    assert timeline.events[1].data == {"route": "gpu", "matchers": ['team="ml"']}
    assert timeline.events[2].data == {"ref": {"ts": "1.000100"}}


async def test_the_first_meta_stays(store: Store) -> None:
    first = meta(severity="page")
    await store.record_history([first, meta(severity="other")], [event(1001.0)])
    await store.record_history([meta(severity="later")], [event(1002.0)])
    [timeline] = await store.timelines([(first.fingerprint, first.episode)])
    assert timeline.meta == first


async def test_events_before_their_meta_are_kept_and_the_meta_fills_in(store: Store) -> None:
    # The pipeline's event reached the store in an earlier batch than the webhook's meta.
    await store.record_history([], [event(1002.0, EventKind.DEDUP, destination="slack")])
    [(early, last_at)] = await store.recent_episodes(0.0, 10)
    assert (early.fingerprint, early.episode, early.alertname, early.labels) == (
        "f1",
        episode(),
        "",
        {},
    )
    assert last_at == 1002.0
    m = meta()
    await store.record_history([m], [event(1001.0)])
    [timeline] = await store.alert_timelines("f1")
    assert timeline.meta == m
    assert [e.kind for e in timeline.events] == [EventKind.RECEIVED, EventKind.DEDUP]
    assert timeline.last_at == 1002.0


async def test_an_episode_keeps_its_latest_events_up_to_the_cap(store: Store) -> None:
    cap = HISTORY_EVENTS_PER_EPISODE
    # More than the cap in one batch, then more again in another.
    await store.record_history(
        [meta()], [event(1000.0 + i, EventKind.ATTEMPT, attempt=i) for i in range(cap + 7)]
    )
    [timeline] = await store.timelines([("f1", episode())])
    assert [e.data["attempt"] for e in timeline.events] == list(range(7, cap + 7))
    await store.record_history(
        [], [event(3000.0 + i, EventKind.ATTEMPT, attempt=cap + 7 + i) for i in range(3)]
    )
    [timeline] = await store.timelines([("f1", episode())])
    assert [e.data["attempt"] for e in timeline.events] == list(range(10, cap + 10))
    # Another episode is untouched by the first one's cap.
    await store.record_history([meta("f2")], [event(1.0, fp="f2")])
    [other] = await store.timelines([("f2", episode("f2"))])
    assert len(other.events) == 1


async def test_recent_episodes_latest_first_with_since_before_and_limit(store: Store) -> None:
    for i, fp in enumerate(["a", "b", "c", "d"]):
        await store.record_history([meta(fp)], [event(1000.0 + 10 * i, fp=fp)])
    # "a" changes again: it is the latest now.
    await store.record_history([], [event(1100.0, EventKind.RESOLVED, fp="a")])
    names = [m.fingerprint for m, _ in await store.recent_episodes(0.0, 10)]
    assert names == ["a", "d", "c", "b"]
    assert await store.recent_episodes(1020.0, 10) == [
        (meta("a"), 1100.0),
        (meta("d"), 1030.0),
        (meta("c"), 1020.0),  # `since` is inclusive
    ]
    assert [m.fingerprint for m, _ in await store.recent_episodes(0.0, 2)] == ["a", "d"]
    # The next page: `before` is exclusive.
    page = await store.recent_episodes(0.0, 2, before=1030.0)
    assert [(m.fingerprint, at) for m, at in page] == [("c", 1020.0), ("b", 1010.0)]
    assert await store.recent_episodes(2000.0, 10) == []
    assert await store.recent_episodes(0.0, 0) == []


async def test_timelines_in_the_order_asked_without_unknown_pairs(store: Store) -> None:
    await store.record_history([meta("a"), meta("b")], [event(1.0, fp="a"), event(2.0, fp="b")])
    found = await store.timelines(
        [("b", episode("b")), ("x", episode("x")), ("a", episode("a")), ("a", "a@other")]
    )
    assert [t.meta.fingerprint for t in found] == ["b", "a"]
    assert await store.timelines([]) == []


async def test_alert_timelines_latest_started_first(store: Store) -> None:
    # Three episodes of one alert (it fired, resolved and fired again), and another alert.
    for started in (1000.0, 3000.0, 2000.0):
        await store.record_history([meta(started=started)], [event(started + 5, started=started)])
    await store.record_history([meta("other")], [event(1.0, fp="other")])
    found = await store.alert_timelines("f1")
    assert [t.meta.started_at for t in found] == [3000.0, 2000.0, 1000.0]
    assert [t.events[0].at for t in found] == [3005.0, 2005.0, 1005.0]
    assert await store.alert_timelines("nobody") == []


async def test_destination_states_from_deliveries_errors_and_pauses(store: Store) -> None:
    await store.record_history(
        [meta()],
        [
            event(10.0, EventKind.ATTEMPT, destination="pd", error="503 Service Unavailable"),
            event(20.0, EventKind.DELIVERED, destination="pd", attempt=2),
            event(15.0, EventKind.DELIVERED, destination="slack", attempt=1),
            event(5.0, EventKind.DEDUP, destination="quiet", reason="already_notified"),
        ],
    )
    # A later batch with an older delivery changes nothing; a dead letter is an error.
    await store.record_history(
        [],
        [
            event(12.0, EventKind.DELIVERED, destination="slack"),
            event(30.0, EventKind.DEAD_LETTER, destination="slack", error="HTTP 404", attempts=1),
            event(8.0, EventKind.ATTEMPT, destination="pd", error="older"),
        ],
    )
    now = time.time()
    await store.pause_destination("pd", now + 3600)
    await store.pause_destination("gone", now - 60)  # a pause that is over
    await store.pause_destination("paused-only", now + 60)
    states = await store.destination_states()
    assert set(states) == {"pd", "slack", "paused-only"}
    pd, slack = states["pd"], states["slack"]
    assert (pd.last_delivered_at, pd.last_error, pd.last_error_at) == (
        20.0,
        "503 Service Unavailable",
        10.0,
    )
    assert pd.paused_until == now + 3600
    assert (slack.last_delivered_at, slack.last_error, slack.last_error_at) == (
        15.0,
        "HTTP 404",
        30.0,
    )
    assert slack.paused_until is None
    paused = states["paused-only"]
    assert paused.last_delivered_at is None and paused.last_error is None
    assert paused.paused_until == now + 60


async def test_purge_forgets_old_episodes_then_the_oldest_beyond_the_bound(store: Store) -> None:
    for i in range(6):
        fp = f"e{i}"
        await store.record_history([meta(fp)], [event(100.0 * i, fp=fp)])
    # By age: last changed before 200 (e0 at 0, e1 at 100).
    assert await store.purge_history(200.0, 100) == 2
    assert [m.fingerprint for m, _ in await store.recent_episodes(0.0, 10)] == [
        "e5",
        "e4",
        "e3",
        "e2",
    ]
    assert await store.timelines([("e0", episode("e0"))]) == []
    assert await store.alert_timelines("e1") == []
    # By count: the oldest beyond 3.
    assert await store.purge_history(0.0, 3) == 1
    assert [m.fingerprint for m, _ in await store.recent_episodes(0.0, 10)] == ["e5", "e4", "e3"]
    assert await store.alert_timelines("e2") == []
    assert await store.purge_history(0.0, 3) == 0
    # A forgotten episode seen again starts afresh, without its old events.
    await store.record_history([meta("e0")], [event(900.0, fp="e0")])
    [again] = await store.alert_timelines("e0")
    assert [e.at for e in again.events] == [900.0]


async def test_purge_works_in_batches_beyond_one(store: Store) -> None:
    metas = [meta(f"p{i}") for i in range(2500)]
    await store.record_history(metas, [event(float(i), fp=f"p{i}") for i in range(2500)])
    assert await store.purge_history(2100.0, 100_000) == 2100
    assert await store.purge_history(0.0, 10) == 390
    assert [m.fingerprint for m, _ in await store.recent_episodes(0.0, 100)] == [
        f"p{i}" for i in range(2499, 2489, -1)
    ]


async def test_replicas_see_each_others_history_and_a_restart_keeps_it(
    make_store: StoreFactory,
) -> None:
    one, two = make_store(), make_store()
    await one.open()
    await two.open()
    try:
        await one.record_history([meta()], [event(1001.0)])
        await two.record_history(
            [meta(severity="ignored")], [event(1002.0, EventKind.DELIVERED, destination="pd")]
        )
        for store in (one, two):
            [timeline] = await store.alert_timelines("f1")
            assert timeline.meta == meta()
            assert [e.kind for e in timeline.events] == [EventKind.RECEIVED, EventKind.DELIVERED]
            assert (await store.destination_states())["pd"].last_delivered_at == 1002.0
    finally:
        await one.close()
        await two.close()
    again = make_store()
    await again.open()
    try:
        [(m, last_at)] = await again.recent_episodes(0.0, 10)
        assert (m, last_at) == (meta(), 1002.0)
        [timeline] = await again.timelines([("f1", episode())])
        assert len(timeline.events) == 2
    finally:
        await again.close()


async def test_a_read_only_store_reads_history_and_writes_none(make_store: StoreFactory) -> None:
    router = make_store()
    await router.open()
    try:
        await router.record_history(
            [meta()], [event(1001.0), event(1002.0, EventKind.DELIVERED, destination="pd")]
        )
        reader = _read_only(make_store, router)
        await reader.open()
        try:
            assert [m for m, _ in await reader.recent_episodes(0.0, 10)] == [meta()]
            [timeline] = await reader.timelines([("f1", episode())])
            assert len(timeline.events) == 2
            assert len(await reader.alert_timelines("f1")) == 1
            assert (await reader.destination_states())["pd"].last_delivered_at == 1002.0
            for write in (
                reader.record_history([meta("x")], [event(1.0, fp="x")]),
                reader.record_history([], []),
                reader.purge_history(1e12, 0),
            ):
                with pytest.raises(ReadOnlyStoreError, match="read-only"):
                    await write
        finally:
            await reader.close()
        assert [m.fingerprint for m, _ in await router.recent_episodes(0.0, 10)] == ["f1"]
    finally:
        await router.close()


async def test_odd_values_in_data_are_kept_as_text(store: Store) -> None:
    # A caller's mistake (a non-JSON value) must not make the batch fail for ever.
    await store.record_history([meta()], [event(1.0, EventKind.CONTEXT, odd={1: object})])
    [timeline] = await store.timelines([("f1", episode())])
    assert timeline.events[0].data == {"odd": {"1": str(object)}}


async def test_a_read_only_file_from_before_the_history_reads_as_none(tmp_path: Path) -> None:
    # `alert-router explain` on the file of a router that has not been upgraded yet: the
    # store's file, and no history file beside it (none is created by reading).
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.close()
    store = SqliteStore(path, read_only=True)
    await store.open()
    try:
        assert await store.recent_episodes(0.0, 10) == []
        assert await store.timelines([("f1", episode())]) == []
        assert await store.alert_timelines("f1") == []
        assert await store.destination_states() == {}
    finally:
        await store.close()


async def test_sqlite_history_has_a_file_and_writer_of_its_own(tmp_path: Path) -> None:
    # The history's batches never queue behind (or hold up) the commits that answer
    # webhooks: another file, another writer thread.
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.open()
    try:
        await store.record_history([meta()], [event(1.0)])
        await store.ingest([], 1.0, 60.0)
    finally:
        await store.close()
    assert (tmp_path / "state.history.db").exists()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "inbox" in tables and not any(t.startswith("history") for t in tables)
    reader = SqliteStore(path, read_only=True)
    await reader.open()
    try:
        assert [m.fingerprint for m, _ in await reader.recent_episodes(0.0, 10)] == ["f1"]
    finally:
        await reader.close()
