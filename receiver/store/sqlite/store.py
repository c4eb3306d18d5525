"""The embedded store: one SQLite file in WAL mode, written by one thread.

Every operation runs on the writer thread (`writer.py`), committed in groups; a webhook is
answered only after its commit.

A claim is a lease with an owner (one per pipeline): the owner renews it while it works
and releases it when it stops; a claim whose lease ran out is anyone's again. Opening the
file releases nothing: a process that died held its claims for at most one lease, and
another process (the CLI's `dead-letters retry`, or a router beside an old one during a
restart) may still be working on them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from receiver.dedup import SENDING, LedgerEntry, decide
from receiver.models import Alert
from receiver.store import codec
from receiver.store.base import (
    Claims,
    Decision,
    InboxItem,
    IngestResult,
    OutboxItem,
    Planned,
    ReadOnlyStoreError,
)
from receiver.store.sqlite import reports
from receiver.store.sqlite.dead_letters import DeadLetters
from receiver.store.sqlite.history import HistoryLog
from receiver.store.sqlite.reports import ReportQueue
from receiver.store.sqlite.schema import (
    CLAIM_DUE,
    CLAIM_FRESH,
    HISTORY_SCHEMA,
    INBOX_INSERT,
    PURGE_LEDGER,
    PURGE_SEEN,
    SEEN_UPSERT,
    history_path,
)
from receiver.store.sqlite.writer import Writer

# Rows a purge statement deletes at most (one writer operation each).
PURGE_BATCH = 1000


def _history_writer(path: str, busy_timeout: float, *, read_only: bool = False) -> Writer:
    return Writer(
        path,
        busy_timeout,
        read_only=read_only,
        schema=HISTORY_SCHEMA,
        synchronous="NORMAL",
        name="sqlite-history",
    )


class SqliteStore(DeadLetters, ReportQueue, HistoryLog):
    """The embedded default store (ALERT_ROUTER_STATE is a file path)."""

    def __init__(
        self, path: str | Path, *, busy_timeout: float = 5.0, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self.read_only = read_only
        self._writer: Writer | None = None
        self._history: Writer | None = None
        # One process owns the file, so send slots and pauses live in memory.
        self._next_slot: dict[str, float] = {}
        self._paused: dict[str, float] = {}

    async def open(self) -> None:
        history = history_path(self.path)
        if not self.read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = Writer(str(self.path), self._busy_timeout)
            self._history = _history_writer(str(history), self._busy_timeout)
        else:
            # Nothing was ever stored here: read as an empty store, create no file (writes
            # are refused by `_write` all the same).
            self._writer = (
                Writer(str(self.path), self._busy_timeout, read_only=True)
                if self.path.exists()
                else Writer(":memory:", self._busy_timeout)
            )
            self._history = (
                _history_writer(str(history), self._busy_timeout, read_only=True)
                if history.exists()
                else _history_writer(":memory:", self._busy_timeout)
            )
        await asyncio.to_thread(self._writer.start)
        await asyncio.to_thread(self._history.start)

    async def close(self) -> None:
        for writer in (self._writer, self._history):
            if writer is not None:
                await asyncio.to_thread(writer.stop)
        self._writer = self._history = None

    async def ingest(self, alerts: Sequence[Alert], now: float, window: float) -> IngestResult:
        # startsAt as the stored alert writes it, so one key names one episode.
        rows = [
            (alert.fingerprint, alert.status, alert.started, codec.dump_alert(alert))
            for alert in alerts
        ]

        def op(conn: sqlite3.Connection) -> IngestResult:
            new: list[tuple[bytes, float]] = []
            duplicate: list[bool] = []
            for fingerprint, status, starts_at, payload in rows:
                # One statement decides and records: a copy seen less than `window` ago
                # changes no row (a duplicate); a new or older one is (re)stamped.
                key = (fingerprint, status, starts_at, now, window)
                if conn.execute(SEEN_UPSERT, key).rowcount:
                    new.append((payload, now))
                    duplicate.append(False)
                else:
                    duplicate.append(True)
            if len(new) == 1:
                conn.execute(INBOX_INSERT, new[0])
            elif new:
                conn.executemany(INBOX_INSERT, new)
            return IngestResult(len(new), len(rows) - len(new), tuple(duplicate))

        return await self._write(op)

    async def claim_inbox(
        self, limit: int, now: float, lease: float, owner: str = ""
    ) -> list[InboxItem]:
        def op(conn: sqlite3.Connection) -> list[InboxItem]:
            rows = conn.execute(
                "SELECT id, alert, received_at, lease_until FROM inbox WHERE lease_until <= ?"
                " ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE inbox SET lease_until = ?, owner = ? WHERE id = ?",
                [(now + lease, owner, row[0]) for row in rows],
            )
            # lease_until > 0 here: a claim that ran out (released and new items have 0).
            return [
                InboxItem(str(id_), codec.load_alert(alert), received_at, taken_over=until > 0)
                for id_, alert, received_at, until in rows
            ]

        return await self._progress(op)

    async def plan(
        self, inbox_ids: Sequence[str], planned: Sequence[Planned], now: float
    ) -> list[Decision]:
        def op(conn: sqlite3.Connection) -> list[Decision]:
            decisions = []
            for item in planned:
                episode = item.alert.episode
                entry = _ledger(conn, item.destination, episode)
                pending = {
                    row[0]
                    for row in conn.execute(
                        "SELECT status FROM outbox WHERE destination = ? AND episode = ?",
                        (item.destination, episode),
                    )
                }
                reason = decide(
                    item.alert.status,
                    entry,
                    pending,
                    repeat_interval=item.repeat_interval,
                    send_resolved=item.send_resolved,
                    now=now,
                )
                if reason in SENDING:
                    conn.execute(
                        "INSERT INTO outbox (destination, episode, status, route, reason,"
                        " alert, context, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            item.destination,
                            episode,
                            item.alert.status,
                            item.route,
                            reason.value,
                            codec.dump_alert(item.alert),
                            codec.dump_context(item.context),
                            item.received_at,
                        ),
                    )
                decisions.append(Decision(item.destination, episode, item.alert.status, reason))
            conn.executemany("DELETE FROM inbox WHERE id = ?", [(int(i),) for i in inbox_ids])
            return decisions

        return await self._progress(op)

    async def ready_count(self, destination: str, now: float, at_most: int | None = None) -> int:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE destination = ?"
                " AND not_before <= ? AND lease_until <= ? LIMIT ?)",
                (destination, now, now, -1 if at_most is None else at_most),
            ).fetchone()
            return int(row[0])

        return await self._run(op)

    async def claim_outbox(
        self, destination: str, limit: int, now: float, lease: float, owner: str = ""
    ) -> list[OutboxItem]:
        def op(conn: sqlite3.Connection) -> list[OutboxItem]:
            # The first `limit` ready notifications in queue (id) order, from two index
            # ranges: never tried (not_before 0, read in id order straight off the index)
            # and tried before and due again (usually few, sorted). One query over both
            # would sort the whole ready queue, a cost that grows with the queue, on the
            # thread that also commits webhooks.
            fresh = conn.execute(CLAIM_FRESH, (destination, now, now, now, limit)).fetchall()
            due = conn.execute(CLAIM_DUE, (destination, now, now, now, now, limit)).fetchall()
            rows = sorted(fresh + due, key=lambda row: int(row[0]))[:limit] if due else fresh
            conn.executemany(
                "UPDATE outbox SET lease_until = ?, owner = ? WHERE id = ?",
                [(now + lease, owner, row[0]) for row in rows],
            )
            return [_outbox_item(row) for row in rows]

        return await self._progress(op)

    async def delivered(
        self, items: Sequence[OutboxItem], refs: Sequence[Mapping[str, str] | None], now: float
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            for item, ref in zip(items, refs, strict=True):
                episode = item.alert.episode
                if item.alert.firing:
                    conn.execute(
                        "INSERT INTO ledger (destination, episode, firing_at, ref)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (destination, episode) DO UPDATE SET"
                        " firing_at = excluded.firing_at, ref = coalesce(excluded.ref, ref)",
                        (item.destination, episode, now, codec.dump_ref(ref)),
                    )
                else:
                    conn.execute(
                        "INSERT INTO ledger (destination, episode, resolved_at)"
                        " VALUES (?, ?, ?) ON CONFLICT (destination, episode) DO UPDATE SET"
                        " resolved_at = excluded.resolved_at",
                        (item.destination, episode, now),
                    )
                conn.execute("DELETE FROM outbox WHERE id = ?", (int(item.id),))

        await self._write(op)

    async def reschedule(self, items: Sequence[OutboxItem], not_before: float, error: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET not_before = ?, lease_until = 0, owner = '',"
                " attempts = attempts + 1, last_error = ? WHERE id = ?",
                [(not_before, error, int(item.id)) for item in items],
            )

        await self._progress(op)

    async def renew(self, owner: str, claims: Claims, now: float, lease: float) -> Claims:
        def op(conn: sqlite3.Connection) -> Claims:
            lost: dict[str, tuple[str, ...]] = {}
            for table, ids in (("inbox", claims.inbox), ("outbox", claims.outbox)):
                gone = []
                for id_ in ids:
                    renewed = conn.execute(
                        f"UPDATE {table} SET lease_until = ?"  # noqa: S608
                        " WHERE id = ? AND owner = ? AND lease_until > ?",
                        (now + lease, int(id_), owner, now),
                    ).rowcount
                    if not renewed:
                        gone.append(id_)
                lost[table] = tuple(gone)
            return Claims(lost["inbox"], lost["outbox"])

        return await self._progress(op)

    async def release(self, owner: str, claims: Claims) -> int:
        def op(conn: sqlite3.Connection) -> int:
            count = 0
            for table, ids in (("inbox", claims.inbox), ("outbox", claims.outbox)):
                for id_ in ids:
                    count += conn.execute(
                        f"UPDATE {table} SET lease_until = 0, owner = ''"  # noqa: S608
                        " WHERE id = ? AND owner = ? AND lease_until > 0",
                        (int(id_), owner),
                    ).rowcount
            return count

        return await self._progress(op)

    async def ledger_entry(self, destination: str, episode: str) -> LedgerEntry | None:
        return await self._run(lambda conn: _ledger(conn, destination, episode))

    async def resolve_queued(self, destination: str, episode: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM outbox WHERE destination = ? AND episode = ?"
                " AND status = 'resolved'",
                (destination, episode),
            ).fetchone()
            return row is not None

        return await self._run(op)

    async def depths(self) -> dict[str, int]:
        def op(conn: sqlite3.Connection) -> dict[str, int]:
            depths = {
                table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
                for table in ("inbox", "outbox", "dead_letters")
            }
            depths["dead_letters"] += reports.dead_letter_count(conn)
            return depths

        return await self._run(op)

    async def queued_destinations(self) -> set[str]:
        def op(conn: sqlite3.Connection) -> set[str]:
            # From one destination to the next along the index: DISTINCT would read every
            # queued row, on the thread that commits webhooks.
            rows = conn.execute(
                "WITH RECURSIVE d(name) AS (SELECT (SELECT min(destination) FROM outbox)"
                " UNION ALL SELECT (SELECT min(destination) FROM outbox"
                " WHERE destination > d.name) FROM d WHERE d.name IS NOT NULL)"
                " SELECT name FROM d WHERE name IS NOT NULL"
            )
            return {row[0] for row in rows}

        return await self._run(op)

    async def check_writable(self) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('ready_check', '1')")

        await self._write(op)

    async def purge(self, now: float, window: float, ledger_retention: float) -> None:
        # A batch per operation: a webhook that arrives meanwhile is committed between two
        # batches instead of after the whole purge (a burst's copies age out together).
        for statement, before in (
            (PURGE_SEEN, now - window),
            (PURGE_LEDGER, now - ledger_retention),
        ):
            while await self._progress(partial(_delete_batch, statement, before)) >= PURGE_BATCH:
                pass
        await self._progress(partial(reports.purge, now=now))

    async def reserve_send(self, destination: str, interval: float, now: float) -> float:
        if self.read_only:
            raise ReadOnlyStoreError
        at = max(now, self._next_slot.get(destination, 0.0), self._paused.get(destination, 0.0))
        self._next_slot[destination] = at + interval
        return at

    async def pause_destination(self, destination: str, until: float) -> None:
        if self.read_only:
            raise ReadOnlyStoreError
        self._paused[destination] = max(until, self._paused.get(destination, 0.0))


def _delete_batch(statement: str, before: float, conn: sqlite3.Connection) -> int:
    """One purge batch: the rows deleted (PURGE_BATCH: there may be more)."""
    return int(conn.execute(statement, (before, PURGE_BATCH)).rowcount)


def _ledger(conn: sqlite3.Connection, destination: str, episode: str) -> LedgerEntry | None:
    row = conn.execute(
        "SELECT firing_at, resolved_at, ref FROM ledger WHERE destination = ? AND episode = ?",
        (destination, episode),
    ).fetchone()
    if row is None:
        return None
    return LedgerEntry(row[0], row[1], codec.load_ref(row[2]))


def _outbox_item(row: tuple[Any, ...]) -> OutboxItem:
    (id_, destination, route, reason, alert, context, received_at, attempts, ref, until) = row
    return codec.outbox_item(
        item_id=str(id_),
        destination=destination,
        route=route,
        reason=reason,
        notification=codec.Notification(
            codec.load_alert(alert), codec.load_context(context), received_at
        ),
        attempts=attempts,
        ref=ref,
        # A claim whose lease ran out: released and retried rows have lease_until 0.
        taken_over=until > 0,
    )
