"""The stores the history's readers run on: the store contract's fixtures (both stores)."""

from __future__ import annotations

from tests.store.conftest import make_store, store

__all__ = ["make_store", "store"]
