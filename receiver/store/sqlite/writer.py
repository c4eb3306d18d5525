"""The SQLite store's writer: one thread that owns the connection and commits in groups.

Operations that arrive together are committed together (group commit); when one of a group
fails, the others are committed again one by one, so only that one fails. A caller's await
returns after its commit.

A commit waits for the disk (synchronous=FULL) when one of its operations asks for it: an
accepted webhook, a delivery recorded. One that only records the pipeline's own progress
(a claim, a plan, a lease) is written without waiting (`flush=False`: NORMAL for that
commit). The file stays consistent either way, and the WAL is one file written in order:
the next waiting commit flushes every earlier one with it. So after a power loss the store
holds a prefix of its commits that includes every acknowledged webhook and every recorded
delivery; what it may have lost is progress the pipeline makes again, as after a stop a
moment earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from receiver.store.base import StoreError
from receiver.store.sqlite.schema import ADDED_COLUMNS, SCHEMA

T = TypeVar("T")
_Op = Callable[[sqlite3.Connection], Any]
# An operation, the future its caller awaits, and whether its commit waits for the disk.
_Item = tuple[_Op, asyncio.Future[Any], bool]
# At most this many operations share one transaction.
_MAX_GROUP = 512


class Writer:
    """One thread that owns the connection and commits queued operations in groups."""

    def __init__(
        self,
        path: str,
        busy_timeout: float,
        *,
        read_only: bool = False,
        schema: str = SCHEMA,
        synchronous: str = "FULL",
        name: str = "sqlite-writer",
    ) -> None:
        """`schema` and `synchronous`: the store's file (FULL: a commit is on disk before
        the webhook is answered, even on power loss), or the history's (NORMAL: WAL keeps it
        consistent, a power loss may cost its last commits, and no commit waits for a
        disk flush)."""
        self._path = path
        self._busy_timeout = busy_timeout
        self._schema = schema
        self._synchronous = synchronous
        # Read-only: the file opened with `mode=ro`, no schema written, and each group in a
        # deferred (read) transaction, which never waits for the router's writes (WAL).
        self._read_only = read_only
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # The connection's synchronous setting now (FULL files switch per commit).
        self._in_force = synchronous
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise StoreError(f"cannot open SQLite store {self._path}: {self._start_error}")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)

    @property
    def synchronous_in_force(self) -> str:
        """The connection's synchronous setting for its last commit: FULL or NORMAL."""
        return self._in_force

    async def run(self, op: Callable[[sqlite3.Connection], T], *, flush: bool = True) -> T:
        """Run `op` in a transaction and return its result once committed. `flush=False`:
        the commit need not wait for the disk (the pipeline's progress; see the module)."""
        if not self._thread.is_alive():
            raise StoreError("the SQLite store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((op, future, flush))
        return await future

    def _connect(self) -> sqlite3.Connection:
        if self._read_only:
            return sqlite3.connect(
                Path(self._path).absolute().as_uri() + "?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout,
            )
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        conn.executescript(self._schema)
        for table, column, definition in ADDED_COLUMNS if self._schema is SCHEMA else ():
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        return conn

    def _run(self) -> None:
        try:
            conn = self._connect()
        except (sqlite3.Error, OSError) as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    break
                group = [first]
                stop = False
                while len(group) < _MAX_GROUP:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    group.append(item)
                self._commit_group(conn, group)
                if stop:
                    break
        finally:
            conn.close()
            self._fail_pending()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Item]) -> None:
        results: list[Any] = []
        try:
            self._synchronous_for(conn, group)
            conn.execute("BEGIN" if self._read_only else "BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            error = StoreError(f"SQLite store cannot write: {exc}")
            for _, future, _ in group:
                _settle(future, False, error)
            return
        for op, future, _ in group:
            try:
                results.append(op(conn))
            except Exception as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if len(group) == 1:
                    _settle(future, False, _op_error(exc))
                    return
                # Rare: one operation failed. Undo the group and commit each operation on
                # its own, so that the others keep their effect and only this one fails
                # (an operation is a function of the database alone: running it again
                # after a rollback is safe). The usual path needs no savepoint per
                # operation, which would double a group's statements and GIL handoffs.
                for item in group:
                    self._commit_group(conn, [item])
                return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = StoreError(f"SQLite store cannot commit: {exc}")
            for _, future, _ in group:
                _settle(future, False, error)
            return
        _settle_all(
            [(future, True, value) for value, (_, future, _) in zip(results, group, strict=True)]
        )

    def _synchronous_for(self, conn: sqlite3.Connection, group: list[_Item]) -> None:
        """FULL for a group with an operation that asked for the disk, NORMAL for one of
        progress only; a NORMAL file (the history's) stays NORMAL."""
        if self._synchronous != "FULL" or self._read_only:
            return
        wanted = "FULL" if any(flush for _, _, flush in group) else "NORMAL"
        if wanted != self._in_force:
            conn.execute(f"PRAGMA synchronous={wanted}")
            self._in_force = wanted

    def _fail_pending(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _settle(item[1], False, StoreError("the SQLite store is closed"))


def _op_error(exc: Exception) -> Exception:
    return StoreError(f"SQLite store error: {exc}") if isinstance(exc, sqlite3.Error) else exc


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    _settle_all([(future, ok, value)])


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """Resolve the futures of a committed group: one wake-up per event loop, not one per
    operation (each wake-up costs the loop a round trip through its self-pipe)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for item in settled:
        by_loop.setdefault(item[0].get_loop(), []).append(item)

    def apply(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        for future, ok, value in items:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(apply, items)
