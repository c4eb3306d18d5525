"""The SQLite store's tables and the statements that run on its hot paths."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, status, starts_at)
) WITHOUT ROWID;
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
SEEN_UPSERT = (
    "INSERT INTO seen VALUES (?1, ?2, ?3, ?4) ON CONFLICT (fingerprint, status, starts_at)"
    " DO UPDATE SET received_at = ?4 WHERE ?4 - seen.received_at >= ?5"
)
