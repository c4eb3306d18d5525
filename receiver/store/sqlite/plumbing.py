"""What every part of the SQLite store uses to run its statements: the store's writer
thread, the history's own writer thread, and the read-only guard.

SqliteStore and its dead-letter, report and history parts (`dead_letters.py`, `reports.py`,
`history.py`) inherit it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from receiver.store.base import ReadOnlyStoreError, StoreError
from receiver.store.sqlite.writer import Writer

T = TypeVar("T")


class SqlitePlumbing:
    """The writers SqliteStore opens, and the calls made through them."""

    read_only: bool
    # The store's file, and the history's (None until opened, and after closing).
    _writer: Writer | None
    _history: Writer | None

    async def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        return await _run_on(self._writer, op)

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self.read_only:
            raise ReadOnlyStoreError
        return await self._run(op)

    async def _progress(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """A write of the pipeline's own progress (claims, plans, leases, retry times): its
        commit does not wait for the disk. The next webhook's or delivery's commit flushes
        it; a power loss before that costs only work done again (`writer.py`)."""
        if self.read_only:
            raise ReadOnlyStoreError
        if self._writer is None:
            raise StoreError("the SQLite store is not open")
        return await self._writer.run(op, flush=False)

    async def _history_run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        return await _run_on(self._history, op)

    async def _history_write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self.read_only:
            raise ReadOnlyStoreError
        return await self._history_run(op)


async def _run_on(writer: Writer | None, op: Callable[[sqlite3.Connection], T]) -> T:
    if writer is None:
        raise StoreError("the SQLite store is not open")
    return await writer.run(op)
