"""The durable store: ingest copies, inbox, outbox, ledger, dead letters (SQLite or Redis).

The protocol and its data types are in `base.py`; `open_store` picks the backend, which is
imported only when chosen (a SQLite router never loads redis-py's asyncio machinery).
"""

from __future__ import annotations

from receiver.store.base import Store


def open_store(state: str, *, busy_timeout: float = 5.0, read_only: bool = False) -> Store:
    """The store named by ALERT_ROUTER_STATE: a redis://, rediss:// or unix:// URL (Redis,
    shared by several replicas) or else a SQLite file path.

    `read_only`: for commands that only look (`dead-letters list`), safe beside a running
    router: SQLite opens the file with `mode=ro` and Redis sends no write, and every write
    method raises `ReadOnlyStoreError`."""
    if state.startswith(("redis://", "rediss://", "unix://")):
        from receiver.store.redis.store import RedisStore

        return RedisStore(state, read_only=read_only)
    from receiver.store.sqlite.store import SqliteStore

    return SqliteStore(state, busy_timeout=busy_timeout, read_only=read_only)
