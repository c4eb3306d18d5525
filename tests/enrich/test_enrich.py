"""Cost context against a real Prometheus scraping an exporter whose values the test sets."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from receiver.config.budgets import parse_budgets
from receiver.config.rules import Rules, load_rules
from receiver.context.budgets import Budgets, exhaustion_time
from receiver.context.enrich import NEGATIVE_TTL, Enricher
from receiver.context.units import format_value
from receiver.metrics import Metrics
from receiver.models import Alert, CostContext, Unit, labels_fingerprint
from receiver.routing.routes import route_alert
from tests.fakes.prometheus import (
    Exporter,
    PrometheusServer,
)
from tests.support import HangingServer, free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "rules" / "routes.yaml"

T = TypeVar("T")

WHISPER = {"service": "whisper-pyannote-stt", "namespace": "ai-models"}
LIPSYNC = {"service": "wav2lip-lipsync", "namespace": "ai-models"}

# What the exporter serves: the platform's metrics for two services and two GPU nodes.
SEED: list[tuple[str, dict[str, str], float]] = [
    ("service_cost_per_hour", WHISPER, 61.5),
    ("service_cost_per_minute", WHISPER, 1.025),
    ("monthly_cost_projection", WHISPER, 44280),
    ("budget_utilization_percentage", WHISPER, 92),
    ("cost_per_job", {"service": WHISPER["service"], "queue_name": "stt-jobs"}, 0.75),
    ("service_cost_per_hour", LIPSYNC, 12.25),
    ("monthly_cost_projection", LIPSYNC, 8820),
    ("budget_utilization_percentage", LIPSYNC, 35),
    ("cost_per_job", {"service": LIPSYNC["service"], "queue_name": "lipsync-jobs"}, 0.05),
    ("service_cost_per_hour", {"service": "big-spender", "namespace": "ai-models"}, 120),
    ("service_cost_per_hour", {"service": "incident-svc", "namespace": "ai-models"}, 60),
    ("service_cost_per_hour", {"service": "nan-svc", "namespace": "ai-models"}, math.nan),
    ("redis_queue_depth", {"queue_name": "stt-jobs", "queue_type": "processing"}, 37),
    ("redis_queue_depth", {"queue_name": "stt-jobs", "queue_type": "pending"}, 5),
    ("redis_queue_depth", {"queue_name": "lipsync-jobs", "queue_type": "processing"}, 3),
    ("total_gpu_hours", {"service": WHISPER["service"], "gpu_type": "T4"}, 1234),
    (
        "gpu_cost_per_hour",
        {"node": "gpu-node-2", "instance_type": "g4dn.12xlarge", "gpu_type": "T4"},
        12.24,
    ),
    (
        "gpu_cost_per_hour",
        {"node": "gpu-node-3", "instance_type": "g5.12xlarge", "gpu_type": "A10G"},
        8.0,
    ),
    *[
        (
            "DCGM_FI_DEV_GPU_UTIL",
            {"Hostname": "gpu-node-2", "gpu": str(gpu), "modelName": "Tesla T4"},
            util,
        )
        for gpu, util in enumerate([12, 80, 9, 21])
    ],
    *[
        (
            "DCGM_FI_DEV_GPU_UTIL",
            {
                "Hostname": "gpu-node-3",
                "gpu": str(gpu),
                "modelName": "NVIDIA A10G",
                "namespace": "ai-models",
                "pod": f"whisper-pyannote-stt-{gpu}",
            },
            util,
        )
        for gpu, util in enumerate([55, 0])
    ],
    ("DCGM_FI_DEV_FB_USED", {"Hostname": "gpu-node-2", "gpu": "0"}, 2048),
    ("DCGM_FI_DEV_FB_FREE", {"Hostname": "gpu-node-2", "gpu": "0"}, 13312),
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeClock:
    """Monotonic seconds that only move when the test says so (cache expiry)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_alert(**labels: str) -> Alert:
    return Alert(
        fingerprint=labels_fingerprint(labels),
        status="firing",
        labels=labels,
        annotations={},
        starts_at=datetime(2026, 11, 29, 2, 39, 35, tzinfo=UTC),
    )


def resolved(alert: Alert, start: datetime, end: datetime) -> Alert:
    return replace(alert, status="resolved", starts_at=start, ends_at=end)


# The five seed alerts with the labels Prometheus gives them (see ../shared/fixtures).
BUDGET = make_alert(
    alertname="BudgetThresholdExceeded",
    **WHISPER,
    severity="critical",
    team="finops",
    instance="127.0.0.1:19100",
    job="cost",
)
HIGH_GPU_COST = make_alert(alertname="HighGPUCost", **WHISPER, severity="warning", team="finops")
HIGH_COST_PER_JOB = make_alert(
    alertname="HighCostPerJob",
    service=WHISPER["service"],
    queue_name="stt-jobs",
    severity="warning",
    team="finops",
)
LOW_GPU = make_alert(
    alertname="LowGPUUtilization",
    Hostname="gpu-node-2",
    gpu="0",
    app="wav2lip-lipsync",
    kubernetes_namespace="ai-models",
    severity="warning",
    team="platform",
)
IDLE_GPU = make_alert(
    alertname="IdleGPU",
    Hostname="gpu-node-3",
    gpu="1",
    namespace="ai-models",  # the pod holding the GPU (rules/prometheus/cost-alerts.yaml)
    pod="whisper-pyannote-stt-7d9f",
    severity="warning",
    team="platform",
)
SEED_ALERTS = [BUDGET, HIGH_GPU_COST, HIGH_COST_PER_JOB, LOW_GPU, IDLE_GPU]

SERVICE_VALUES = {
    "cost_per_hour": 61.5,
    "monthly_projection": 44280,
    "budget_used": 92,
    "jobs_per_hour": 82,  # $61.50/h / $0.75/job
}


def shipped_data() -> dict[str, Any]:
    """rules/routes.yaml as data, for tests that vary it."""
    data: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return data


def write_rules(directory: Path, data: Mapping[str, Any]) -> Rules:
    path = directory / "routes.yaml"
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return load_rules(path)


def custom_rules(directory: Path, context: Mapping[str, Any], **prometheus: Any) -> Rules:
    return write_rules(
        directory,
        {
            "prometheus": {"url": "http://prometheus.invalid:9090", **prometheus},
            "destinations": {"finops-slack": {"slack": {"webhook_url": {"secret": "slack-url"}}}},
            "context": dict(context),
            "default": "finops-slack",
        },
    )


@pytest.fixture(scope="module")
def seeded(exporter: Exporter, prometheus: PrometheusServer) -> float:
    """Serve SEED and wait until Prometheus has scraped it; the wall time it is visible."""
    for name, labels, value in SEED:
        exporter.set(name, labels, value)
    return prometheus.sync()


@pytest.fixture(scope="module")
def shipped() -> Rules:
    return load_rules(SHIPPED)


async def enrich_once(
    rules: Rules,
    alerts: Sequence[Alert],
    url: str,
    metrics: Metrics | None = None,
    **options: Any,
) -> list[CostContext]:
    async with httpx.AsyncClient() as client:
        enricher = Enricher(client, metrics or Metrics(), prometheus_url=url, **options)
        try:
            return await enricher.enrich(rules, alerts)
        finally:
            await enricher.aclose()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def queries(metrics: Metrics, outcome: str = "success") -> float:
    return sample(metrics, "alert_router_prometheus_queries_total", outcome=outcome)


def unavailable(metrics: Metrics, reason: str) -> float:
    return sample(metrics, "alert_router_context_unavailable_total", reason=reason)


# --- the five seed alerts, with the shipped context ---------------------------------------


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


# --- joining results to alerts ---------------------------------------------------------------


def test_join_on_shared_labels_gives_each_alert_its_series(
    seeded: float, prometheus: PrometheusServer, shipped: Rules
) -> None:
    whisper, lipsync, unknown = run(
        enrich_once(
            shipped,
            [
                make_alert(alertname="HighGPUCost", **WHISPER),
                make_alert(alertname="HighGPUCost", **LIPSYNC),
                make_alert(alertname="HighGPUCost", service="not-exported"),
            ],
            prometheus.url,
        )
    )
    assert whisper.get("cost_per_hour") == 61.5
    assert lipsync.get("cost_per_hour") == 12.25
    assert lipsync.get("jobs_per_hour") == pytest.approx(245)
    # The alert carries `service` but no series has its value: no data, said per value.
    assert unknown.values == ()
    assert dict(unknown.unavailable) == {name: "no data" for name in SERVICE_VALUES}


def test_join_maps_alert_label_to_result_label(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    rules = custom_rules(
        tmp_path,
        {
            "node_cost": {
                "query": "sum by (node) (gpu_cost_per_hour)",
                "unit": "usd_per_hour",
                "join": {"Hostname": "node"},
            },
        },
    )
    by_hostname, by_node, neither = run(
        enrich_once(
            rules,
            [
                make_alert(alertname="IdleGPU", Hostname="gpu-node-3"),
                # Mapped: the result's `node` compares with the alert's Hostname only.
                make_alert(alertname="IdleGPU", node="gpu-node-2"),
                make_alert(alertname="Other"),
            ],
            prometheus.url,
        )
    )
    assert by_hostname.get("node_cost") == 8.0
    assert by_hostname.values[0].title == "Node cost"  # from the name when no title
    assert by_node == CostContext()
    assert neither == CostContext()


def test_series_without_labels_and_scalars_apply_to_every_alert(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    rules = custom_rules(
        tmp_path,
        {
            "fleet": {
                "query": "sum(service_cost_per_hour"
                '{service=~"whisper-pyannote-stt|wav2lip-lipsync"})',
                "unit": "usd_per_hour",
            },
            "fleet_scalar": {
                "query": 'scalar(sum(service_cost_per_hour{service="wav2lip-lipsync"}))',
                "unit": "usd_per_hour",
            },
        },
    )
    contexts = run(enrich_once(rules, [BUDGET, LOW_GPU, make_alert(alertname="X")], prometheus.url))
    for context in contexts:
        assert context.numbers() == {"fleet": 73.75, "fleet_scalar": 12.25}


def test_most_specific_series_wins_when_several_match(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    # {service} and {service, namespace} both match the alert: the second, more specific.
    rules = custom_rules(
        tmp_path,
        {
            "cost": {
                "query": "sum by (service) (service_cost_per_hour)"
                " or sum by (service, namespace) (service_cost_per_hour * 2)",
                "unit": "usd_per_hour",
            }
        },
    )
    with_ns, without_ns = run(
        enrich_once(
            rules,
            [
                make_alert(alertname="A", **WHISPER),
                make_alert(alertname="A", service=WHISPER["service"]),
            ],
            prometheus.url,
        )
    )
    assert with_ns.get("cost") == 123.0
    assert without_ns.get("cost") == 61.5


# --- batching, caching, single flight -----------------------------------------------------------


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


# --- failure costs only the context ----------------------------------------------------------


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


def test_error_envelopes_become_query_error_reasons(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    rules = custom_rules(
        tmp_path,
        {
            "good": {"query": "sum by (service) (service_cost_per_hour)", "unit": "usd_per_hour"},
            # bad_data (HTTP 400): a parse error.
            "broken": {"query": "sum by (service) (service_cost_per_hour", "unit": "usd_per_hour"},
            # execution (HTTP 422): many-to-many matching.
            "ambiguous": {
                "query": "service_cost_per_hour * on () group_left service_cost_per_hour",
                "unit": "usd_per_hour",
            },
        },
    )
    metrics = Metrics()
    [context] = run(enrich_once(rules, [HIGH_GPU_COST], prometheus.url, metrics))
    assert context.numbers() == {"good": 61.5}
    reasons = dict(context.unavailable)
    assert reasons["broken"].startswith("query error: bad_data: ")
    assert "unclosed left parenthesis" in reasons["broken"]
    assert reasons["ambiguous"].startswith("query error: execution: ")
    assert unavailable(metrics, "query_error") == 2
    assert queries(metrics, "failure") == 2


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


def test_unusable_prometheus_url_is_unreachable_not_an_exception(tmp_path: Path) -> None:
    rules = custom_rules(tmp_path, {"cost": {"query": "up", "unit": "count"}})
    [context] = run(enrich_once(rules, [HIGH_GPU_COST], "ftp://nowhere"))
    assert context.unavailable == (("cost", "Prometheus unreachable"),)


# --- routing on money --------------------------------------------------------------------------


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


# --- budgets ---------------------------------------------------------------------------------


def test_budget_and_its_exhaustion_date(
    seeded: float, prometheus: PrometheusServer, shipped: Rules, tmp_path: Path
) -> None:
    path = tmp_path / "cost_allocation.json"
    path.write_text(
        '{"whisper-pyannote-stt": {"budget_monthly": 48000, "alert_threshold": 80}}',
        encoding="utf-8",
    )
    now = datetime(2026, 11, 15, tzinfo=UTC)
    budget, gpu = run(
        enrich_once(
            shipped,
            [BUDGET, LOW_GPU],
            prometheus.url,
            budgets=Budgets(path),
            wall_clock=lambda: now,
        )
    )
    # 92 % of $48,000 spent: $3,840 left at $61.50/h = 62.44 h from now.
    runs_out = now + timedelta(hours=48000 * 0.08 / 61.5)
    assert budget.get("budget_monthly") == 48000
    assert budget.get("budget_exhausted_on") == pytest.approx(runs_out.timestamp())
    shown = {v.title: format_value(v.value, v.unit) for v in budget.values}
    assert shown["Monthly budget"] == "$48,000"
    assert shown["Budget runs out"] == "2026-11-17"
    assert [v.unit for v in budget.values[-2:]] == [Unit.USD, Unit.TIMESTAMP]
    assert gpu.get("budget_monthly") is None  # no service label


def test_budgets_file_from_the_rules_is_reread_when_it_changes(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    path = tmp_path / "cost_allocation.json"
    path.write_text('{"whisper-pyannote-stt": {"budget_monthly": 48000}}', encoding="utf-8")
    data = shipped_data()
    data["budgets"] = {"file": "cost_allocation.json"}
    rules = write_rules(tmp_path, data)

    async def scenario() -> tuple[CostContext, CostContext]:
        async with httpx.AsyncClient() as client:
            enricher = Enricher(client, Metrics(), prometheus_url=prometheus.url)
            [first] = await enricher.enrich(rules, [BUDGET])
            path.write_text('{"whisper-pyannote-stt": {"budget_monthly": 60000}}', encoding="utf-8")
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
            [second] = await enricher.enrich(rules, [BUDGET])
            return first, second

    first, second = run(scenario())
    assert first.get("budget_monthly") == 48000
    assert second.get("budget_monthly") == 60000


def test_a_broken_budgets_file_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "cost_allocation.json"
    path.write_text('{"a": {"budget_monthly": 100, "alert_threshold": 0.8}}', encoding="utf-8")
    budgets = Budgets(path)
    path.write_text("{not json", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    budgets.refresh()
    assert budgets.get("a") is not None
    assert budgets.error is not None and "is not JSON" in budgets.error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # alert_threshold: percent or ratio, kept as a ratio.
        ('{"a": {"budget_monthly": 100, "alert_threshold": 80}}', 0.8),
        ('{"a": {"budget_monthly": 100, "alert_threshold": 0.9}}', 0.9),
        ('{"a": {"budget_monthly": 100}}', None),
    ],
)
def test_alert_threshold_is_a_ratio(text: str, expected: float | None) -> None:
    assert parse_budgets(text, Path("b.json"))["a"].alert_threshold == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "must map service names"),
        ('{"a": {"budget_monthly": "lots"}}', "'a' needs a numeric budget_monthly"),
        (
            '{"a": {"budget_monthly": 1, "alert_threshold": "x"}}',
            "alert_threshold must be a number",
        ),
    ],
)
def test_invalid_budgets_are_named(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_budgets(text, Path("b.json"))


MID_NOVEMBER = datetime(2026, 11, 16, tzinfo=UTC)  # 360 hours into the month


@pytest.mark.parametrize(
    ("used", "rate", "expected"),
    [
        # used % and $/hour: the remaining $400 at $10/h.
        (60.0, 10.0, MID_NOVEMBER + timedelta(hours=40)),
        # used % only: the month's average rate, $600 in 360 h.
        (60.0, None, MID_NOVEMBER + timedelta(hours=400 / (600 / 360))),
        # $/hour only: as if that rate held all month ($3,600 spent; $1,000 budget gone).
        (None, 10.0, MID_NOVEMBER),
        (None, 1.0, MID_NOVEMBER + timedelta(hours=1000 - 360)),
        # Already over budget: today.
        (120.0, 10.0, MID_NOVEMBER),
        # No burn rate: no date.
        (None, None, None),
        (0.0, None, None),
        (50.0, math.nan, MID_NOVEMBER + timedelta(hours=500 / (500 / 360))),
    ],
)
def test_exhaustion_time(used: float | None, rate: float | None, expected: datetime | None) -> None:
    got = exhaustion_time(1000, MID_NOVEMBER, used_percent=used, cost_per_hour=rate)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got.timestamp() == pytest.approx(expected.timestamp())


# --- incident cost at resolve ----------------------------------------------------------------


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


# --- check --online --------------------------------------------------------------------------


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


# --- the fixtures themselves -------------------------------------------------------------------


def test_prometheus_factory_starts_another_prometheus_with_rule_files(
    prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    rule_file = tmp_path / "cost.rules.yaml"
    rule_file.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "cost",
                        "rules": [
                            {
                                "record": "service:cost_per_hour:sum",
                                "expr": "sum by (service) (service_cost_per_hour)",
                            }
                        ],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    server = prometheus_factory([rule_file], wait_for_scrape=False)
    rules = httpx.get(f"{server.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert [r["name"] for g in rules for r in g["rules"]] == ["service:cost_per_hour:sum"]
    server.stop()
    assert not server.running
