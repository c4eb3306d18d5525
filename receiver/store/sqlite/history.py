"""The SQLite store's history: each alert episode's identity and events, and each
destination's last delivery and last error.

A recorder's batch is one operation of the writer thread, so one transaction; its JSON is
encoded there too, off the event loop. An episode's row (`history_episodes`) counts its
events, so the cap (HISTORY_EVENTS_PER_EPISODE) costs a delete only for the episodes that
pass it. `history_destinations` is kept up to date by the same batch, so the status page
never scans the events.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import orjson

from receiver.events import (
    EpisodeMeta,
    Event,
    EventKind,
    Timeline,
    destination_news,
    dump_data,
    dump_events,
)
from receiver.store.base import HISTORY_EVENTS_PER_EPISODE, DestinationState
from receiver.store.sqlite.plumbing import SqlitePlumbing

# Episodes forgotten per purge operation: the writer thread also commits webhooks.
_PURGE_BATCH = 1000
_KINDS = {kind.value: kind for kind in EventKind}

# One row per episode touched by a batch. The meta columns are set once: an episode
# recorded before its meta has NULLs there until the meta arrives. (In an UPDATE, every
# expression reads the row as it was, so `alertname IS NULL` is the old value throughout.)
_EPISODE_UPSERT = """
INSERT INTO history_episodes
    (fingerprint, episode, alertname, labels, source, started_at, first_at, last_at, events)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (fingerprint, episode) DO UPDATE SET
    alertname = coalesce(alertname, excluded.alertname),
    labels = CASE WHEN alertname IS NULL THEN excluded.labels ELSE labels END,
    source = CASE WHEN alertname IS NULL THEN excluded.source ELSE source END,
    started_at = CASE WHEN alertname IS NULL THEN excluded.started_at ELSE started_at END,
    first_at = min(first_at, excluded.first_at),
    last_at = max(last_at, excluded.last_at),
    events = events + excluded.events
"""
# Served by the partial index `history_episodes_over` (its condition is this one).
_OVER_CAP = (
    "SELECT id, fingerprint, episode FROM history_episodes"  # noqa: S608
    f" WHERE events > {HISTORY_EVENTS_PER_EPISODE}"
)
_EVENT_INSERT = "INSERT INTO history_events (fingerprint, episode, events) VALUES (?, ?, ?)"
_EVENT_ROWS = (
    "SELECT id, events FROM history_events WHERE fingerprint = ? AND episode = ? ORDER BY id"
)
# max() and comparisons with NULL are NULL: coalesce keeps the known value.
_DESTINATION_UPSERT = """
INSERT INTO history_destinations (destination, delivered_at, error, error_at)
VALUES (?, ?, ?, ?)
ON CONFLICT (destination) DO UPDATE SET
    delivered_at = max(coalesce(delivered_at, excluded.delivered_at),
                       coalesce(excluded.delivered_at, delivered_at)),
    error = CASE WHEN excluded.error_at >= coalesce(error_at, excluded.error_at)
                 THEN excluded.error ELSE error END,
    error_at = CASE WHEN excluded.error_at >= coalesce(error_at, excluded.error_at)
                    THEN excluded.error_at ELSE error_at END
"""
_EPISODE_COLUMNS = "fingerprint, episode, alertname, labels, source, started_at, last_at"


class HistoryLog(SqlitePlumbing):
    """The history half of SqliteStore: on the history file's own writer thread. The
    store keeps its send pauses in memory (`_paused`), which `destination_states`
    reports."""

    _paused: dict[str, float]

    async def record_history(self, metas: Sequence[EpisodeMeta], events: Sequence[Event]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            record(conn, metas, events)

        await self._history_write(op)

    async def recent_episodes(
        self, since: float, limit: int, before: float | None = None
    ) -> list[tuple[EpisodeMeta, float]]:
        query = f"SELECT {_EPISODE_COLUMNS} FROM history_episodes WHERE last_at >= ?"  # noqa: S608
        params: list[float] = [since]
        if before is not None:
            query += " AND last_at < ?"
            params.append(before)
        query += " ORDER BY last_at DESC, id DESC LIMIT ?"

        def op(conn: sqlite3.Connection) -> list[tuple[EpisodeMeta, float]]:
            if not self._has_history(conn):
                return []
            rows = conn.execute(query, (*params, max(limit, 0))).fetchall()
            return [(_meta(row), row[-1]) for row in rows]

        return await self._history_run(op)

    async def timelines(self, episodes: Sequence[tuple[str, str]]) -> list[Timeline]:
        def op(conn: sqlite3.Connection) -> list[Timeline]:
            if not self._has_history(conn):
                return []
            found = []
            for fingerprint, episode in episodes:
                row = conn.execute(
                    f"SELECT {_EPISODE_COLUMNS} FROM history_episodes"  # noqa: S608
                    " WHERE fingerprint = ? AND episode = ?",
                    (fingerprint, episode),
                ).fetchone()
                if row is not None:
                    found.append(_timeline(conn, row))
            return found

        return await self._history_run(op)

    async def alert_timelines(self, fingerprint: str) -> list[Timeline]:
        def op(conn: sqlite3.Connection) -> list[Timeline]:
            if not self._has_history(conn):
                return []
            rows = conn.execute(
                f"SELECT {_EPISODE_COLUMNS} FROM history_episodes"  # noqa: S608
                " WHERE fingerprint = ? ORDER BY started_at DESC, id DESC",
                (fingerprint,),
            ).fetchall()
            return [_timeline(conn, row) for row in rows]

        return await self._history_run(op)

    async def destination_states(self) -> dict[str, DestinationState]:
        def op(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if not self._has_history(conn):
                return []
            return conn.execute(
                "SELECT destination, delivered_at, error, error_at FROM history_destinations"
            ).fetchall()

        states = {
            destination: DestinationState(delivered_at, error, error_at)
            for destination, delivered_at, error, error_at in await self._history_run(op)
        }
        now = time.time()
        for destination, until in self._paused.items():
            if until > now:
                state = states.get(destination, DestinationState())
                states[destination] = DestinationState(
                    state.last_delivered_at, state.last_error, state.last_error_at, until
                )
        return states

    async def purge_history(self, before: float, max_episodes: int) -> int:
        # One batch per operation: each is a short transaction between the webhooks'.
        def old(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT id, fingerprint, episode FROM history_episodes WHERE last_at < ?"
                " ORDER BY last_at LIMIT ?",
                (before, _PURGE_BATCH),
            ).fetchall()
            return _forget(conn, rows)

        def excess(conn: sqlite3.Connection) -> int:
            count = int(conn.execute("SELECT count(*) FROM history_episodes").fetchone()[0])
            over = min(count - max(max_episodes, 0), _PURGE_BATCH)
            if over <= 0:
                return 0
            rows = conn.execute(
                "SELECT id, fingerprint, episode FROM history_episodes"
                " ORDER BY last_at, id LIMIT ?",
                (over,),
            ).fetchall()
            return _forget(conn, rows)

        total = 0
        for op in (old, excess):
            while True:
                forgotten = await self._history_write(op)
                total += forgotten
                if forgotten < _PURGE_BATCH:
                    break
        return total

    def _has_history(self, conn: sqlite3.Connection) -> bool:
        """False for a file opened read-only that no router with history has written."""
        if not self.read_only:
            return True
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'history_episodes'"
        ).fetchone()
        return row is not None


def record(conn: sqlite3.Connection, metas: Sequence[EpisodeMeta], events: Sequence[Event]) -> None:
    """Write one batch: the episodes' rows, the events, the cap, the destinations."""
    firsts: dict[tuple[str, str], EpisodeMeta] = {}
    for given in metas:
        firsts.setdefault((given.fingerprint, given.episode), given)
    # One pass: each episode's events ([at, kind, destination, data]: orjson writes the
    # kind, a str enum, as its value) and their span.
    chunks: dict[tuple[str, str], list[list[Any]]] = {}
    for e in events:
        key = (e.fingerprint, e.episode)
        chunk = chunks.get(key)
        if chunk is None:
            chunks[key] = [[e.at, e.kind, e.destination, e.data]]
        else:
            chunk.append([e.at, e.kind, e.destination, e.data])
    rows = []
    for key in dict.fromkeys([*chunks, *firsts]):
        meta = firsts.get(key)
        chunk = chunks.get(key)
        if chunk is None:
            # A meta without events in the batch: the episode changed when it started.
            assert meta is not None
            span: tuple[float, float, int] = (meta.started_at, meta.started_at, 0)
        else:
            times = [item[0] for item in chunk]
            span = (min(times), max(times), len(chunk))
        rows.append((*key, *_meta_columns(meta), *span))
    conn.executemany(_EPISODE_UPSERT, rows)
    conn.executemany(_EVENT_INSERT, [(*key, dump_events(chunk)) for key, chunk in chunks.items()])
    for id_, fingerprint, episode in conn.execute(_OVER_CAP).fetchall():
        _trim(conn, id_, fingerprint, episode)
    conn.executemany(
        _DESTINATION_UPSERT,
        [(n.destination, n.delivered_at, n.error, n.error_at) for n in destination_news(events)],
    )


def _meta_columns(meta: EpisodeMeta | None) -> tuple[Any, ...]:
    if meta is None:
        return (None, None, None, None)
    return (meta.alertname, dump_data(meta.labels), meta.source, meta.started_at)


def _meta(row: tuple[Any, ...]) -> EpisodeMeta:
    fingerprint, episode, alertname, labels, source, started_at = row[:6]
    return EpisodeMeta(
        fingerprint=fingerprint,
        episode=episode,
        alertname=alertname or "",
        labels=orjson.loads(labels) if labels else {},
        source=source or "",
        started_at=started_at or 0.0,
    )


def _rows(conn: sqlite3.Connection, fingerprint: str, episode: str) -> list[list[Any]]:
    """The episode's events, [at, kind, destination, data] each, in recorded order."""
    rows = conn.execute(_EVENT_ROWS, (fingerprint, episode)).fetchall()
    return [item for _, chunk in rows for item in orjson.loads(chunk)]


def _trim(conn: sqlite3.Connection, id_: int, fingerprint: str, episode: str) -> None:
    """Keep an episode's latest HISTORY_EVENTS_PER_EPISODE events, in one row."""
    kept = _rows(conn, fingerprint, episode)[-HISTORY_EVENTS_PER_EPISODE:]
    conn.execute(
        "DELETE FROM history_events WHERE fingerprint = ? AND episode = ?", (fingerprint, episode)
    )
    conn.execute(_EVENT_INSERT, (fingerprint, episode, dump_events(kept)))
    conn.execute("UPDATE history_episodes SET events = ? WHERE id = ?", (len(kept), id_))


def _timeline(conn: sqlite3.Connection, row: tuple[Any, ...]) -> Timeline:
    meta = _meta(row)
    items = _rows(conn, meta.fingerprint, meta.episode)
    events = [
        Event(at, meta.fingerprint, meta.episode, _KINDS[kind], data, destination)
        for at, kind, destination, data in items
        # A kind a newer replica wrote, which this version cannot show.
        if kind in _KINDS
    ]
    # By time; events of the same time keep their recorded order (sort is stable).
    events.sort(key=lambda e: e.at)
    return Timeline(meta, events, row[-1])


def _forget(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    conn.executemany(
        "DELETE FROM history_events WHERE fingerprint = ? AND episode = ?",
        [(fingerprint, episode) for _, fingerprint, episode in rows],
    )
    conn.executemany("DELETE FROM history_episodes WHERE id = ?", [(row[0],) for row in rows])
    return len(rows)
