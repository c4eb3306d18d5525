"""Fixtures of the cost-context tests: the exporter seeded and scraped, the shipped rules."""

from __future__ import annotations

import pytest

from receiver.config.rules import Rules, load_rules
from tests.context.seed import (
    SEED,
    SHIPPED,
)
from tests.fakes.prometheus import Exporter, PrometheusServer


@pytest.fixture(scope="module")
def seeded(exporter: Exporter, prometheus: PrometheusServer) -> float:
    """Serve SEED and wait until Prometheus has scraped it; the wall time it is visible."""
    for name, labels, value in SEED:
        exporter.set(name, labels, value)
    return prometheus.sync()


@pytest.fixture(scope="module")
def shipped() -> Rules:
    return load_rules(SHIPPED)
