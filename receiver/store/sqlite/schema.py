"""The SQLite store's tables and the statements that run on its hot paths."""

from __future__ import annotations

from pathlib import Path

from receiver.store.base import HISTORY_EVENTS_PER_EPISODE

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, status, starts_at)
) WITHOUT ROWID;
-- The purge finds the copies past the window by this index, a batch at a time, instead of
-- scanning the table while every webhook's commit waits behind it (one writer).
CREATE INDEX IF NOT EXISTS seen_received ON seen (received_at);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert BLOB NOT NULL,
    received_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    episode TEXT NOT NULL,
    status TEXT NOT NULL,
    route TEXT NOT NULL,
    reason TEXT NOT NULL,
    alert BLOB NOT NULL,
    context BLOB NOT NULL,
    received_at REAL NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_episode ON outbox (destination, episode, status);
CREATE INDEX IF NOT EXISTS outbox_ready ON outbox (destination, not_before);
CREATE TABLE IF NOT EXISTS ledger (
    destination TEXT NOT NULL,
    episode TEXT NOT NULL,
    firing_at REAL,
    resolved_at REAL,
    ref BLOB,
    PRIMARY KEY (destination, episode)
) WITHOUT ROWID;
-- When an entry last changed (PURGE_LEDGER's expression), for the same reason.
CREATE INDEX IF NOT EXISTS ledger_age
    ON ledger (max(coalesce(firing_at, 0), coalesce(resolved_at, 0)));
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    episode TEXT NOT NULL,
    status TEXT NOT NULL,
    route TEXT NOT NULL,
    reason TEXT NOT NULL,
    alert BLOB NOT NULL,
    context BLOB NOT NULL,
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_slots (
    report TEXT NOT NULL,
    slot_at REAL NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (report, slot_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_sends (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    report TEXT NOT NULL,
    slot_at REAL NOT NULL,
    late INTEGER NOT NULL,
    destination TEXT NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    lease_until REAL NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    posted BLOB,
    error TEXT,
    -- Set: the send failed for good and is a dead letter until it is replayed.
    failed_at REAL
);
"""

# The history lives in a file of its own (`history_path`), written by a thread of its own:
# its batches never wait for, nor hold up, the commits that answer webhooks.
HISTORY_SCHEMA = f"""
-- The history (receiver/store/sqlite/history.py): one row per alert episode, its events,
-- and each destination's last delivery and last error. An alert's episodes are found by
-- the unique index's first column.
CREATE TABLE IF NOT EXISTS history_episodes (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    episode TEXT NOT NULL,
    -- NULL until the episode's meta arrives (an event may be recorded before it).
    alertname TEXT,
    labels BLOB,
    source TEXT,
    started_at REAL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    -- Events kept: the episodes over the cap are found by the partial index below.
    events INTEGER NOT NULL DEFAULT 0,
    UNIQUE (fingerprint, episode)
);
CREATE INDEX IF NOT EXISTS history_episodes_recent ON history_episodes (last_at);
CREATE INDEX IF NOT EXISTS history_episodes_over ON history_episodes (id)
    WHERE events > {HISTORY_EVENTS_PER_EPISODE};
-- The events of one episode recorded by one batch, as one row: a JSON list of
-- [at, kind, destination, data] in recorded order (a row per event cost four times the
-- writes: an alert's received, context, route and dedup events come in one batch).
CREATE TABLE IF NOT EXISTS history_events (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    episode TEXT NOT NULL,
    events BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS history_events_episode ON history_events (fingerprint, episode, id);
CREATE TABLE IF NOT EXISTS history_destinations (
    destination TEXT PRIMARY KEY,
    delivered_at REAL,
    error TEXT,
    error_at REAL
) WITHOUT ROWID;
"""


def history_path(path: Path) -> Path:
    """The history file beside the store's: `state.db` -> `state.history.db`."""
    return path.with_name(f"{path.stem}.history{path.suffix}")


# Columns added since the first release: (table, column, definition), added to a file made
# before them when it is opened for writing.
ADDED_COLUMNS = (
    # Who holds a claim (lease_until > 0): renewal and release touch only their own.
    ("inbox", "owner", "TEXT NOT NULL DEFAULT ''"),
    ("outbox", "owner", "TEXT NOT NULL DEFAULT ''"),
)

INBOX_INSERT = "INSERT INTO inbox (alert, received_at) VALUES (?, ?)"
_CLAIM = (
    "SELECT o.id, o.destination, o.route, o.reason, o.alert, o.context,"
    " o.received_at, o.attempts, l.ref, o.lease_until FROM outbox o"
    " LEFT JOIN ledger l ON l.destination = o.destination AND l.episode = o.episode"
    " WHERE o.destination = ? AND {due} AND o.lease_until <= ?"
    # A resolve never overtakes its firing while the firing waits for a retry
    # (PagerDuty drops a resolve it has no incident for).
    " AND NOT (o.status = 'resolved' AND EXISTS (SELECT 1 FROM outbox f"
    " WHERE f.destination = o.destination AND f.episode = o.episode"
    " AND f.status = 'firing' AND f.id < o.id"
    " AND (f.not_before > ? OR f.lease_until > ?)))"
    " ORDER BY o.id LIMIT ?"
)
# Parameters: destination, [now,] now (lease), now, now (the firing's), limit.
CLAIM_FRESH = _CLAIM.format(due="o.not_before = 0")
CLAIM_DUE = _CLAIM.format(due="o.not_before > 0 AND o.not_before <= ?")
# The purges: at most `limit` rows a statement, found by the indexes above, so that each
# batch is a short transaction between the webhooks' commits. Parameters: before, limit.
PURGE_SEEN = (
    "DELETE FROM seen WHERE (fingerprint, status, starts_at) IN (SELECT fingerprint, status,"
    " starts_at FROM seen WHERE received_at < ? LIMIT ?)"
)
# By when the entry last changed: the very expression of the index ledger_age.
PURGE_LEDGER = (
    "DELETE FROM ledger WHERE (destination, episode) IN (SELECT destination, episode"
    " FROM ledger WHERE max(coalesce(firing_at, 0), coalesce(resolved_at, 0)) < ? LIMIT ?)"
)
SEEN_UPSERT = (
    "INSERT INTO seen VALUES (?1, ?2, ?3, ?4) ON CONFLICT (fingerprint, status, starts_at)"
    " DO UPDATE SET received_at = ?4 WHERE ?4 - seen.received_at >= ?5"
)
