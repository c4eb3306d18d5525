"""Batched, cached, single flight: a storm costs one query per context value, an outage
or a hanging Prometheus costs only the context, and quickly."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from receiver.config.rules import Rules
from receiver.context.cache import NEGATIVE_TTL
from receiver.context.enrich import Enricher
from receiver.metrics import Metrics
from receiver.models import Alert, CostContext
from tests.context.seed import (
    BUDGET,
    HIGH_GPU_COST,
    LOW_GPU,
    SEED_ALERTS,
    SERVICE_VALUES,
    WHISPER,
    FakeClock,
    make_alert,
    queries,
    resolved,
    run,
    shipped_data,
    unavailable,
    write_rules,
)
from tests.fakes.prometheus import PrometheusServer
from tests.support import HangingServer


def storm(size: int) -> list[Alert]:
    kinds = [
        lambda i: make_alert(alertname="BudgetThresholdExceeded", service=f"svc-{i}", n=str(i)),
        lambda i: make_alert(alertname="HighGPUCost", **WHISPER, n=str(i)),
        lambda i: make_alert(
            alertname="HighCostPerJob", service="s", queue_name="stt-jobs", n=str(i)
        ),
        lambda i: make_alert(
            alertname="LowGPUUtilization", Hostname="gpu-node-2", gpu=str(i % 4), n=str(i)
        ),
        lambda i: make_alert(alertname="IdleGPU", Hostname=f"gpu-node-{i % 5}", gpu="1", n=str(i)),
    ]
    return [kinds[i % len(kinds)](i) for i in range(size)]


def test_storm_of_1000_alerts_costs_one_query_per_context_value(
    seeded: float, prometheus: PrometheusServer, shipped: Rules
) -> None:
    metrics = Metrics()
    clock = FakeClock()
    alerts = storm(1000)
    values = len(shipped.context)
    before = prometheus.http_requests("/api/v1/query")

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            enricher = Enricher(client, metrics, clock=clock, prometheus_url=prometheus.url)
            contexts = await enricher.enrich(shipped, alerts)
            assert len(contexts) == 1000
            assert contexts[1].numbers() == pytest.approx(SERVICE_VALUES)
            assert queries(metrics) == values
            assert prometheus.http_requests("/api/v1/query") - before == values
            # Within cache_ttl (30s) the next storm is served from the cache.
            clock.advance(29)
            await enricher.enrich(shipped, alerts)
            assert queries(metrics) == values
            # The next cache period queries each value once more.
            clock.advance(2)
            await enricher.enrich(shipped, alerts)
            assert queries(metrics) == 2 * values
            assert queries(metrics, "failure") == 0

    run(scenario())
    assert prometheus.http_requests("/api/v1/query") - before == 2 * values


def test_concurrent_callers_share_one_in_flight_query(
    seeded: float, prometheus: PrometheusServer, shipped: Rules
) -> None:
    metrics = Metrics()

    async def scenario() -> list[list[CostContext]]:
        async with httpx.AsyncClient() as client:
            enricher = Enricher(client, metrics, prometheus_url=prometheus.url)
            return await asyncio.gather(*(enricher.enrich(shipped, [a]) for a in SEED_ALERTS * 4))

    results = run(scenario())
    assert queries(metrics) == len(shipped.context)
    assert [r[0].get("cost_per_hour") for r in results[:2]] == [61.5, 61.5]


def test_prometheus_stopped_costs_the_context_quickly_then_recovers(
    seeded: float, prometheus: PrometheusServer, shipped: Rules
) -> None:
    metrics = Metrics()
    clock = FakeClock()
    over = resolved(HIGH_GPU_COST, datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC))

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            enricher = Enricher(client, metrics, clock=clock, prometheus_url=prometheus.url)
            await enricher.enrich(shipped, SEED_ALERTS)
            prometheus.stop()
            try:
                clock.advance(31)
                started = time.monotonic()
                budget, low_gpu, gone = await enricher.enrich(shipped, [BUDGET, LOW_GPU, over])
                assert time.monotonic() - started < 1.0
                assert budget.values == ()
                assert budget.unavailable == tuple(
                    (name, "Prometheus unreachable") for name in SERVICE_VALUES
                )
                assert dict(low_gpu.unavailable) == dict.fromkeys(
                    ["gpu_utilization", "node_cost_per_hour", "wasted_per_hour"],
                    "Prometheus unreachable",
                )
                assert ("incident_cost", "Prometheus unreachable") in gone.unavailable
                assert unavailable(metrics, "prometheus_unreachable") == 4 + 3 + 5
                failed = queries(metrics, "failure")
                # A storm during the outage does not send a query per alert: failures are
                # remembered for NEGATIVE_TTL.
                await enricher.enrich(shipped, storm(1000))
                assert queries(metrics, "failure") == failed
                clock.advance(NEGATIVE_TTL + 0.1)
                await enricher.enrich(shipped, [BUDGET])
                assert queries(metrics, "failure") > failed
            finally:
                prometheus.start()
            clock.advance(NEGATIVE_TTL + 0.1)
            [budget] = await enricher.enrich(shipped, [BUDGET])
            assert budget.numbers() == pytest.approx(SERVICE_VALUES)

    run(scenario())


def test_hanging_prometheus_never_delays_past_the_timeout(
    hanging_server: HangingServer, tmp_path: Path
) -> None:
    data = shipped_data()
    data["prometheus"] = {"url": hanging_server.url, "timeout": "500ms", "cache_ttl": "30s"}
    rules = write_rules(tmp_path, data)
    metrics = Metrics()

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            enricher = Enricher(client, metrics)  # the URL from the rules file
            try:
                started = time.monotonic()
                [context] = await enricher.enrich(rules, [HIGH_GPU_COST])
                elapsed = time.monotonic() - started
                assert 0.45 < elapsed < 0.5 + 0.4
                assert context.values == ()
                assert set(context.unavailable) == {
                    (name, "query timed out after 0.5s") for name in rules.context
                }
                assert unavailable(metrics, "timeout") == len(rules.context)
                # Remembered: the next call does not wait again.
                started = time.monotonic()
                await enricher.enrich(rules, [HIGH_GPU_COST])
                assert time.monotonic() - started < 0.1
            finally:
                await enricher.aclose()

    run(scenario())
