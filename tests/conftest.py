"""Fixtures shared by every test: the local servers that speak the vendors' protocols
(Slack, PagerDuty) and the real programs started on loopback (Prometheus, Redis)."""

from __future__ import annotations

pytest_plugins = [
    "tests.fakes.alertmanager",
    "tests.fakes.pagerduty",
    "tests.fakes.prometheus",
    "tests.fakes.redis",
    "tests.fakes.slack",
]
