"""The durable store: ingest copies, inbox, outbox, ledger, dead letters (SQLite or Redis)."""
