"""Settings: the environment's defaults agree with the pipeline's own."""

from __future__ import annotations

import pytest

from receiver.config.settings import Settings
from receiver.pipeline.tuning import Tuning


def test_the_lease_default_is_the_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    # A claim outlives a dead replica by one lease: the failover the README promises.
    monkeypatch.delenv("ALERT_ROUTER_LEASE_SECONDS", raising=False)
    assert Settings().lease == Tuning().lease == 12.0


def test_the_lease_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_ROUTER_LEASE_SECONDS", "30")
    assert Settings().lease == 30.0
