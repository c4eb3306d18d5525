"""Incident cost at resolve: a range query over the alert's window, integrated."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.config.rules import Rules
from receiver.metrics import Metrics
from receiver.models import Unit
from tests.context.seed import (
    IDLE_GPU,
    custom_rules,
    enrich_once,
    make_alert,
    queries,
    resolved,
    run,
)
from tests.fakes.prometheus import Exporter, PrometheusServer


def test_incident_cost_of_a_resolved_alert(
    seeded: float, prometheus: PrometheusServer, shipped: Rules
) -> None:
    # incident-svc costs a constant $60/h (since `seeded`); idle GPU 1 of gpu-node-3 $4/h.
    # The window starts after a fresh scrape, so it holds samples from its first second.
    begin = prometheus.sync() + 0.5
    start = datetime.fromtimestamp(begin, UTC)
    time.sleep(3)
    end = datetime.now(UTC)
    hours = (end - start).total_seconds() / 3600
    service = resolved(
        make_alert(alertname="HighGPUCost", service="incident-svc", namespace="ai-models"),
        start,
        end,
    )
    gpu = resolved(IDLE_GPU, start, end)
    firing = replace(service, status="firing", ends_at=None)
    metrics = Metrics()
    service_ctx, gpu_ctx, firing_ctx = run(
        enrich_once(shipped, [service, gpu, firing], prometheus.url, metrics)
    )
    assert service_ctx.get("incident_cost") == pytest.approx(60 * hours, rel=1e-6)
    assert gpu_ctx.get("incident_cost") == pytest.approx(4 * hours, rel=1e-6)
    assert firing_ctx.get("incident_cost") is None
    [item] = [v for v in service_ctx.values if v.name == "incident_cost"]
    assert (item.title, item.unit) == ("Incident cost", Unit.USD)
    # One range query per incident_cost value for the shared window, besides the instant ones.
    assert queries(metrics) == len(shipped.context) + 2


def test_incident_cost_follows_a_changing_rate(
    exporter: Exporter, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    labels = {"service": "step-svc", "namespace": "ai-models"}
    exporter.set("service_cost_per_hour", labels, 36)
    low = prometheus.sync()
    time.sleep(2)
    exporter.set("service_cost_per_hour", labels, 72)
    high = prometheus.sync()
    time.sleep(2)
    start, end = low + 0.5, time.time()
    rules = custom_rules(
        tmp_path,
        {
            "cost": {
                "query": "sum by (service) (service_cost_per_hour)",
                "unit": "usd_per_hour",
                "incident_cost": True,
            }
        },
    )
    alert = resolved(
        make_alert(alertname="HighGPUCost", service="step-svc"),
        datetime.fromtimestamp(start, UTC),
        datetime.fromtimestamp(end, UTC),
    )
    [context] = run(enrich_once(rules, [alert], prometheus.url))
    cost = context.get("incident_cost")
    assert cost is not None
    # $36/h until the change (somewhere in the last scrape interval before `high`), then $72/h.
    assert 36 * (end - start) / 3600 < cost < 72 * (end - start) / 3600
    assert cost == pytest.approx((36 * (high - start) + 72 * (end - high)) / 3600, rel=0.25)
