"""The Enricher end to end against a real Prometheus: the seed alerts' numbers, titles
and units, values that are not numbers, routing on money, `check --online`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from receiver.config.rules import Rules
from receiver.context.enrich import Enricher
from receiver.context.units import format_value
from receiver.metrics import Metrics
from receiver.models import Alert
from receiver.routing.routes import route_alert
from tests.context.seed import (
    BUDGET,
    HIGH_COST_PER_JOB,
    HIGH_GPU_COST,
    IDLE_GPU,
    LOW_GPU,
    SEED_ALERTS,
    SERVICE_VALUES,
    WHISPER,
    custom_rules,
    enrich_once,
    make_alert,
    run,
    unavailable,
)
from tests.fakes.prometheus import PrometheusServer
from tests.support import free_port


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        # Service values; no queue_name, so no cost per job or queue depth; no GPU values.
        (BUDGET, SERVICE_VALUES),
        (HIGH_GPU_COST, SERVICE_VALUES),
        # With queue_name: cost per job of that queue and the queue's depth (37 + 5).
        (HIGH_COST_PER_JOB, {**SERVICE_VALUES, "cost_per_job": 0.75, "queue_depth": 42}),
        # GPU 0 of a 4-GPU node at $12.24/h, 12 % busy: $3.06/h x 0.88 wasted.
        (
            LOW_GPU,
            {"gpu_utilization": 12, "node_cost_per_hour": 12.24, "wasted_per_hour": 3.06 * 0.88},
        ),
        # GPU 1 of a 2-GPU node at $8/h, idle: its whole $4/h share is waste.
        (IDLE_GPU, {"gpu_utilization": 0, "node_cost_per_hour": 8.0, "wasted_per_hour": 4.0}),
    ],
    ids=[alert.name for alert in SEED_ALERTS],
)
def test_seed_alert_gets_its_numbers(
    seeded: float,
    prometheus: PrometheusServer,
    shipped: Rules,
    alert: Alert,
    expected: dict[str, float],
) -> None:
    [context] = run(enrich_once(shipped, [alert], prometheus.url))
    assert context.unavailable == ()
    assert context.numbers() == pytest.approx(expected)
    # Values come in the order of the rules' context section.
    order = list(shipped.context)
    assert [v.name for v in context.values] == sorted(
        (v.name for v in context.values), key=order.index
    )


def test_values_carry_titles_and_units_for_formatting(
    seeded: float, prometheus: PrometheusServer, shipped: Rules
) -> None:
    job, gpu = run(enrich_once(shipped, [HIGH_COST_PER_JOB, LOW_GPU], prometheus.url))
    shown = {v.title: format_value(v.value, v.unit) for v in (*job.values, *gpu.values)}
    assert shown == {
        "Service cost": "$61.50/h",
        "Monthly projection": "$44,280",
        "Budget used": "92 %",
        "Cost per job": "$0.75",
        "Jobs per hour": "82",
        "Queue depth": "42",
        "GPU utilization": "12 %",
        "Node cost": "$12.24/h",
        "Wasted": "$2.69/h",
    }


def test_nan_and_inf_are_not_numbers(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    rules = custom_rules(
        tmp_path,
        {
            "cost": {"query": "sum by (service) (service_cost_per_hour)", "unit": "usd_per_hour"},
            "per_nothing": {
                "query": "sum by (service) (service_cost_per_hour) / 0",
                "unit": "count",
            },
        },
    )
    metrics = Metrics()
    nan, whisper = run(
        enrich_once(
            rules,
            [make_alert(alertname="A", service="nan-svc"), make_alert(alertname="A", **WHISPER)],
            prometheus.url,
            metrics,
        )
    )
    assert nan.unavailable == (("cost", "not a number"), ("per_nothing", "not a number"))
    assert whisper.numbers() == {"cost": 61.5}
    assert whisper.unavailable == (("per_nothing", "not a number"),)
    assert unavailable(metrics, "not_a_number") == 3


def test_when_conditions_route_on_the_enriched_context(
    seeded: float, prometheus: PrometheusServer, shipped: Rules
) -> None:
    dear = make_alert(alertname="HighGPUCost", service="big-spender", namespace="ai-models")
    cheap = HIGH_GPU_COST
    dear_ctx, cheap_ctx = run(enrich_once(shipped, [dear, cheap], prometheus.url))
    assert dear_ctx.get("cost_per_hour") == 120
    to_dear = [t.destination for t in route_alert(shipped, dear.labels, dear_ctx.numbers())]
    to_cheap = [t.destination for t in route_alert(shipped, cheap.labels, cheap_ctx.numbers())]
    assert to_dear == ["oncall", "finops-slack"]
    assert to_cheap == ["finops-slack"]


def test_check_queries_finds_broken_queries(
    seeded: float, prometheus: PrometheusServer, shipped: Rules, tmp_path: Path
) -> None:
    broken = custom_rules(
        tmp_path,
        {
            "fine": {"query": "sum(service_cost_per_hour)", "unit": "usd_per_hour"},
            "broken": {"query": "sum by (service (service_cost_per_hour)", "unit": "usd"},
        },
    )

    async def scenario(rules: Rules, url: str) -> list[str]:
        async with httpx.AsyncClient() as client:
            return await Enricher(client, Metrics(), prometheus_url=url).check_queries(rules)

    assert run(scenario(shipped, prometheus.url)) == []
    [problem] = run(scenario(broken, prometheus.url))
    assert problem.startswith("context.broken: query error: bad_data: ")
    assert "parse error" in problem
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert run(scenario(shipped, nowhere)) == [f"Prometheus unreachable at {nowhere}"]
