"""The SQLite store's dead letters: notifications that failed for good, and their replay.

A dead letter keeps the whole outbox row (alert, context, route, reason), so that a replay
queues the same notification again; the report sends that failed for good
(`reports.py`) are listed and replayed with them, under their `report-<id>` ids.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from receiver.store import codec
from receiver.store.base import REPORT_DEAD_LETTER, DeadLetter, OutboxItem
from receiver.store.sqlite import reports
from receiver.store.sqlite.plumbing import SqlitePlumbing


class DeadLetters(SqlitePlumbing):
    """The dead-letter half of SqliteStore."""

    async def dead_letter(self, items: Sequence[OutboxItem], error: str, now: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            for item in items:
                conn.execute(
                    "INSERT INTO dead_letters (destination, episode, status, route, reason,"
                    " alert, context, received_at, attempts, error, failed_at)"
                    " SELECT destination, episode, status, route, reason, alert, context,"
                    " received_at, attempts + 1, ?, ? FROM outbox WHERE id = ?",
                    (error, now, int(item.id)),
                )
                conn.execute("DELETE FROM outbox WHERE id = ?", (int(item.id),))

        await self._write(op)

    async def dead_letters(self) -> list[DeadLetter]:
        def op(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute(
                "SELECT id, destination, alert, episode, status, error, attempts, failed_at"
                " FROM dead_letters ORDER BY id"
            ).fetchall()
            return [
                DeadLetter(
                    id=str(id_),
                    destination=destination,
                    alertname=codec.load_alert(alert).name,
                    episode=episode,
                    status=status,
                    error=error,
                    attempts=attempts,
                    failed_at=failed_at,
                )
                for id_, destination, alert, episode, status, error, attempts, failed_at in rows
            ] + reports.dead_letters(conn)

        return await self._run(op)

    async def replay_dead_letters(self, ids: Sequence[str] | None, now: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            if ids is None:
                chosen = [row[0] for row in conn.execute("SELECT id FROM dead_letters")]
                count = reports.replay(conn, None)
            else:
                chosen = [int(i) for i in ids if not i.startswith(REPORT_DEAD_LETTER)]
                count = reports.replay(
                    conn,
                    [
                        int(i.removeprefix(REPORT_DEAD_LETTER))
                        for i in ids
                        if i.startswith(REPORT_DEAD_LETTER)
                    ],
                )
            for id_ in chosen:
                conn.execute(
                    "INSERT OR IGNORE INTO outbox (destination, episode, status, route, reason,"
                    " alert, context, received_at, not_before) SELECT destination, episode,"
                    " status, route, reason, alert, context, received_at, ? FROM dead_letters"
                    " WHERE id = ?",
                    (now, id_),
                )
                count += conn.execute("DELETE FROM dead_letters WHERE id = ?", (id_,)).rowcount
            return count

        return await self._write(op)
