"""The SQLite store's scheduled reports: the slots taken and each destination's send.

A slot row is written once, by the one caller that takes it (its primary key makes every
other claim a no-op), together with one `report_sends` row per destination. A send is
leased like an outbox notification; a send that failed for good keeps its row, with
`failed_at` set, as a dead letter (`report-<id>` in `dead-letters`), until it is replayed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from receiver.store import codec
from receiver.store.base import REPORT_DEAD_LETTER, REPORT_SLOT_RETENTION, DeadLetter, ReportSend
from receiver.store.sqlite.plumbing import SqlitePlumbing

_SEND_COLUMNS = "id, report, slot_at, late, destination, attempts, posted, owner"


class ReportQueue(SqlitePlumbing):
    """The report half of SqliteStore."""

    async def claim_report_slot(
        self,
        report: str,
        slot_at: datetime,
        owner: str,
        destinations: Sequence[str] = (),
        *,
        late: bool = False,
    ) -> bool:
        at = slot_at.timestamp()

        def op(conn: sqlite3.Connection) -> bool:
            # The primary key (report, slot_at) makes the second claim of a slot a no-op.
            cursor = conn.execute(
                "INSERT OR IGNORE INTO report_slots VALUES (?, ?, ?)", (report, at, owner)
            )
            if cursor.rowcount != 1:
                return False
            conn.executemany(
                "INSERT INTO report_sends (report, slot_at, late, destination) VALUES (?, ?, ?, ?)",
                [(report, at, int(late), destination) for destination in destinations],
            )
            return True

        return await self._write(op)

    async def last_report_slot(self, report: str) -> datetime | None:
        def op(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT max(slot_at) FROM report_slots WHERE report = ?", (report,)
            ).fetchone()
            return None if row is None else row[0]

        last = await self._run(op)
        return None if last is None else datetime.fromtimestamp(last, UTC)

    async def claim_report_sends(
        self, limit: int, now: float, lease: float, owner: str
    ) -> list[ReportSend]:
        def op(conn: sqlite3.Connection) -> list[ReportSend]:
            rows = conn.execute(
                f"SELECT {_SEND_COLUMNS} FROM report_sends"  # noqa: S608
                " WHERE failed_at IS NULL AND not_before <= ? AND lease_until <= ?"
                " ORDER BY slot_at, id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE report_sends SET lease_until = ?, owner = ? WHERE id = ?",
                [(now + lease, owner, row[0]) for row in rows],
            )
            return [_send(row) for row in rows]

        return await self._write(op)

    async def renew_report_sends(
        self, owner: str, ids: Sequence[str], now: float, lease: float
    ) -> set[str]:
        def op(conn: sqlite3.Connection) -> set[str]:
            held = set()
            for id_ in ids:
                if conn.execute(
                    "UPDATE report_sends SET lease_until = ?"
                    " WHERE id = ? AND owner = ? AND lease_until > ? AND failed_at IS NULL",
                    (now + lease, int(id_), owner, now),
                ).rowcount:
                    held.add(id_)
            return held

        return await self._write(op)

    async def report_sent(self, owner: str, send: ReportSend) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM report_sends WHERE id = ? AND owner = ? AND failed_at IS NULL",
                (int(send.id), owner),
            )
            return cursor.rowcount == 1

        return await self._write(op)

    async def reschedule_report_send(
        self,
        owner: str,
        send: ReportSend,
        not_before: float,
        error: str,
        posted: Mapping[str, str] | None,
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE report_sends SET attempts = attempts + 1, not_before = ?, error = ?,"
                " posted = ?, lease_until = 0, owner = ''"
                " WHERE id = ? AND owner = ? AND failed_at IS NULL",
                (not_before, error, codec.dump_ref(posted), int(send.id), owner),
            )

        await self._write(op)

    async def dead_letter_report_send(
        self, owner: str, send: ReportSend, error: str, now: float
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE report_sends SET attempts = attempts + 1, error = ?, failed_at = ?,"
                " lease_until = 0, owner = '' WHERE id = ? AND owner = ? AND failed_at IS NULL",
                (error, now, int(send.id), owner),
            )

        await self._write(op)


def _send(row: tuple[Any, ...]) -> ReportSend:
    id_, report, slot_at, late, destination, attempts, posted, owner = row
    return ReportSend(
        id=str(id_),
        report=report,
        slot_at=datetime.fromtimestamp(slot_at, UTC),
        late=bool(late),
        destination=destination,
        attempts=attempts,
        posted=codec.load_ref(posted),
        # Rescheduling clears the owner: one left means a lease that ran out.
        taken_over=owner != "",
    )


def dead_letters(conn: sqlite3.Connection) -> list[DeadLetter]:
    rows = conn.execute(
        "SELECT id, destination, report, slot_at, error, attempts, failed_at FROM report_sends"
        " WHERE failed_at IS NOT NULL ORDER BY id"
    ).fetchall()
    return [
        DeadLetter(
            id=f"{REPORT_DEAD_LETTER}{id_}",
            destination=destination,
            alertname=report,
            episode=datetime.fromtimestamp(slot_at, UTC).isoformat(),
            status="report",
            error=error,
            attempts=attempts,
            failed_at=failed_at,
        )
        for id_, destination, report, slot_at, error, attempts, failed_at in rows
    ]


def dead_letter_count(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM report_sends WHERE failed_at IS NOT NULL").fetchone()
    return int(row[0])


def replay(conn: sqlite3.Connection, ids: Sequence[int] | None) -> int:
    """Queue the reports' dead letters `ids` (all when None) to be sent at once."""
    requeue = (
        "UPDATE report_sends SET attempts = 0, not_before = 0, failed_at = NULL, error = NULL"
        " WHERE failed_at IS NOT NULL"
    )
    if ids is None:
        return conn.execute(requeue).rowcount
    return sum(conn.execute(requeue + " AND id = ?", (id_,)).rowcount for id_ in ids)


def purge(conn: sqlite3.Connection, now: float) -> None:
    """Forget old slots, keeping each report's latest (the schedule starts from it)."""
    conn.execute(
        "DELETE FROM report_slots WHERE slot_at < ? AND slot_at < (SELECT max(s.slot_at)"
        " FROM report_slots s WHERE s.report = report_slots.report)",
        (now - REPORT_SLOT_RETENTION,),
    )
