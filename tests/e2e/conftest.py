"""Fixtures of the end-to-end tests: the real chain (tests/e2e/chain.py). Alertmanager's
fixture comes from tests.fakes.alertmanager, registered in tests/conftest.py."""

from __future__ import annotations

from tests.e2e.chain import chain_fixture, chain_prometheus_fixture

__all__ = ["chain_fixture", "chain_prometheus_fixture"]
