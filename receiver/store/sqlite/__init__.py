"""The embedded store (SQLite), for one replica."""
